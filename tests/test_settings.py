"""Settings: environment variables, defaults, refusing placeholder secrets in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.settings import MiB, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CRASHD_DATA_DIR", "CRASHD_DATABASE_URL", "CRASHD_REDIS_URL", "CRASHD_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.data_dir == Path("./crashd-data")
    assert settings.effective_database_url == f"sqlite:///{Path('./crashd-data/crashd.db').resolve()}"
    assert settings.redis_url is None
    assert settings.max_upload_bytes == 100 * MiB and settings.max_decompressed_bytes == 500 * MiB


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRASHD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRASHD_DATABASE_URL", "postgresql://u@db:5432/crashd")
    monkeypatch.setenv("CRASHD_REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("CRASHD_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("CRASHD_SENTRY_DSN", "http://k@127.0.0.1:1/1")
    settings = Settings()
    assert settings.data_dir == tmp_path and settings.max_upload_bytes == 1234
    assert settings.effective_database_url == "postgresql+psycopg://u@db:5432/crashd"
    assert settings.redis_url == "redis://r:6379/0" and settings.sentry_dsn == "http://k@127.0.0.1:1/1"


@pytest.mark.parametrize("token", [None, "changeme", "secret", "short-token"])
def test_production_refuses_placeholder_admin_token(token: str | None) -> None:
    with pytest.raises(ValidationError, match="CRASHD_ADMIN_TOKEN"):
        Settings(environment="production", admin_token=token)


@pytest.mark.parametrize("name", ["jira_token", "github_token"])
def test_production_refuses_placeholder_tracker_tokens(name: str) -> None:
    for placeholder in ("changeme", " TOKEN ", ""):
        with pytest.raises(ValidationError, match=f"CRASHD_{name.upper()} is a placeholder"):
            Settings(environment="production", admin_token="x" * 32, **{name: placeholder})
    assert getattr(Settings(environment="production", admin_token="x" * 32, **{name: "ghp_" + "a" * 36}), name)
    assert getattr(Settings(environment="development", **{name: "changeme"}), name) == "changeme"


def test_production_accepts_real_token() -> None:
    assert Settings(environment="production", admin_token="x" * 32).resolve_admin_token() == "x" * 32


def test_development_token_is_created_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).resolve_admin_token()
    assert len(first) >= 24
    assert Settings(data_dir=tmp_path).resolve_admin_token() == first
    assert (tmp_path / "admin-token").stat().st_mode & 0o077 == 0
