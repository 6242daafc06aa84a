"""crashd symbolicator."""
