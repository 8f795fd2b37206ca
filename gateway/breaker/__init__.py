"""The security circuit breaker: suspends sharing per principal, department, dataset or pair."""
