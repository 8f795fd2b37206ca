"""The tamper-evident audit log: hash-chained JSON lines plus Ed25519-signed checkpoints."""
