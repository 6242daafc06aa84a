"""crashd workers."""
