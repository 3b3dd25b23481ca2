"""PHI egress gateway."""
