"""Fault tests: each starts its own Redis, PostgreSQL and crashd processes (services.py)."""
