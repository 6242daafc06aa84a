"""crashd schemas."""
