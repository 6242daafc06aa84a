"""A newcomer's setup (issue 17): `make run` installs only when pyproject.toml changed, and the
suite runs against the PostgreSQL and Redis named by CRASHD_TEST_PG / CRASHD_TEST_REDIS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def planned(venv: Path, target: str) -> str:
    """What `make TARGET` would run (a dry run) with VENV=venv."""
    done = subprocess.run(["make", "-n", "-f", "Makefile", target, f"VENV={venv}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_run_installs_only_when_pyproject_changed(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    (venv / "bin" / "python").chmod(0o755)
    # a fresh venv: run installs (and test installs the dev extras) once
    assert "pip install --quiet -e ." in planned(venv, "run")
    assert "pip install --quiet -e '.[dev]'" in planned(venv, "install-dev")
    (venv / ".installed").touch()
    (venv / ".installed-dev").touch()
    for _ in range(2):  # installed: every start goes straight to the server
        plan = planned(venv, "run")
        assert "pip install" not in plan and "crashd serve" in plan
        assert "pip install" not in planned(venv, "install-dev")
    # pyproject.toml changed since: install again
    old = (REPO / "pyproject.toml").stat().st_mtime - 60
    os.utime(venv / ".installed", (old, old))
    assert "pip install --quiet -e ." in planned(venv, "run")


def test_conftest_reads_crashd_test_pg_and_redis() -> None:
    """CRASHD_TEST_PG / CRASHD_TEST_REDIS pick the suite's PostgreSQL and Redis (README)."""
    show = "import conftest; print(conftest.PG_ADMIN_URL); print(conftest.REDIS_URL)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_TEST_")}
    given = subprocess.run([sys.executable, "-c", show], cwd=REPO / "tests", capture_output=True, text=True,
                           timeout=60, check=True, env={**base, "CRASHD_TEST_PG": "postgresql://me@localhost/mydb",
                                                        "CRASHD_TEST_REDIS": "redis://localhost:6380/3"})
    assert given.stdout.split() == ["postgresql://me@localhost/mydb", "redis://localhost:6380/3"]
    default = subprocess.run([sys.executable, "-c", show], cwd=REPO / "tests", capture_output=True, text=True,
                             timeout=60, check=True, env=base)
    assert default.stdout.split() == ["postgresql://postgres@127.0.0.1:5432/test", "redis://127.0.0.1:6379/15"]
