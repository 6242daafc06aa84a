"""crashd server."""
