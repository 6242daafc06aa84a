"""crashd triage."""
