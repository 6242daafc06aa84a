"""Stack walking: amd64, x86, arm64 (CFI, frame pointer, stack scan)."""
