"""crashd storage."""
