"""Clinical layer."""
