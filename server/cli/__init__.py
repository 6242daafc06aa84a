"""The ``crashd`` command line: server/cli/commands.py builds the parser and
runs a command; each family of commands has its own module here (serve, projects, reprocess,
offline, symbols, users, prune, triage).
"""

from server.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
