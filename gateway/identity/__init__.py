"""Identity: verifying bearer tokens and building the principal from verified claims."""
