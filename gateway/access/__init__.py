"""The data-sharing workflow: the consumers' catalog and access requests with owner approval."""
