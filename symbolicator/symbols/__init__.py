"""Symbol files: store, caches, sources and the SymbolProvider the walker asks."""
