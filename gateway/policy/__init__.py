"""Access policy: the data catalog, Casbin decisions, temporary grants and explanations."""
