"""A release as CI posts it (docs/releases.md): the checked body, and the ticket references
its commit messages make (``fixes crashd#12``, ``closes CRASH-7``, ``fixed owner/repo#12``).

Pure: a dict in, plain values out; no database, no HTTP. Every bound is here, so the work a
post can cause is bounded before anything is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MAX_COMMITS = 10_000
VERSION_MAX, ENVIRONMENT_MAX, URL_MAX = 200, 50, 500
MESSAGE_MAX, ID_MAX, AUTHOR_MAX = 1000, 64, 100
MAX_REFERENCES = 500  # distinct references looked up per release; more are ignored (logged by the caller)
DEFAULT_ENVIRONMENT = "staging"

# A closing keyword, then one or more references separated by commas, "and" or spaces:
# "fixes crashd#12", "Closes CRASH-7, CRASH-8", "fixed studio/game#12 and crashd#3".
_REF = r"(?:crashd#\d{1,18}|[A-Za-z][A-Za-z0-9_]{0,49}-\d{1,18}|[\w.-]{1,100}/[\w.-]{1,100}#\d{1,18})"
_CLOSING = re.compile(rf"\b(?:fix|fixes|fixed|close|closes|closed)\b:?\s+({_REF}(?:\s*(?:,|\band\b)?\s*{_REF})*)",
                      re.IGNORECASE)
_ONE = re.compile(_REF, re.IGNORECASE)


class BadRelease(ValueError):
    """The body cannot be a release; str() is the reason. ``status``: 400, or 413 when too long."""

    def __init__(self, why: str, status: int = 400) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class Commit:
    """One commit of a release, cut to the bounds."""

    id: str
    message: str
    author: str

    @property
    def first_line(self) -> str:
        return self.message.strip().splitlines()[0][:200] if self.message.strip() else ""

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "message": self.message, "author": self.author}


@dataclass(frozen=True)
class ReleaseIn:
    """A checked release body."""

    version: str
    environment: str
    deployed_at: datetime | None  # None: now
    url: str | None
    commits: tuple[Commit, ...]


@dataclass(frozen=True)
class Reference:
    """A ticket a commit says it fixes: ``kind`` is ``crashd`` (value: the ticket id as text),
    ``jira`` (``CRASH-7``, upper-cased) or ``github`` (``owner/repo#12``: value ``12``, repo
    ``owner/repo``); ``text`` as written; the first commit that made it."""

    kind: str
    value: str
    text: str
    commit: Commit
    repo: str = ""


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise BadRelease(f"{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRelease(f"{key} must be a non-empty string")
    if len(value.strip()) > limit:
        raise BadRelease(f"{key} is longer than {limit} characters")
    return value.strip()


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadRelease("deployed_at must be an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _commit(item: Any, index: int) -> Commit:
    if not isinstance(item, dict):
        raise BadRelease(f"commits[{index}] must be an object with id, message, author")
    fields = {k: item.get(k) for k in ("id", "message", "author")}
    if any(v is not None and not isinstance(v, str) for v in fields.values()):
        raise BadRelease(f"commits[{index}]: id, message and author must be strings")
    return Commit(str(fields["id"] or "").strip()[:ID_MAX], str(fields["message"] or "")[:MESSAGE_MAX],
                  str(fields["author"] or "").strip()[:AUTHOR_MAX])


def parse_release(body: dict[str, Any]) -> ReleaseIn:
    """The checked release of a POST body. Raises BadRelease (413 for more than MAX_COMMITS
    commits, checked before any commit is read)."""
    version = _text(body, "version", VERSION_MAX, required=True)
    environment = _text(body, "environment", ENVIRONMENT_MAX) or DEFAULT_ENVIRONMENT
    url = _text(body, "url", URL_MAX)
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise BadRelease("url must be an http(s) URL")
    commits = body.get("commits") or []
    if not isinstance(commits, list):
        raise BadRelease("commits must be a list of {id, message, author}")
    if len(commits) > MAX_COMMITS:
        raise BadRelease(f"too many commits: {len(commits)} > {MAX_COMMITS}; post a narrower range", 413)
    assert version is not None  # required above
    return ReleaseIn(version, environment, _time(body.get("deployed_at")), url,
                     tuple(_commit(c, i) for i, c in enumerate(commits)))


def references(commits: tuple[Commit, ...] | list[Commit]) -> list[Reference]:
    """The distinct ticket references the commits close, in commit order (at most
    MAX_REFERENCES). A reference counts only after a closing keyword (fix, fixes, fixed, close,
    closes, closed; any case): "see CRASH-7" or "revert crashd#12" resolve nothing."""
    found: dict[tuple[str, str, str], Reference] = {}
    for commit in commits:
        for match in _CLOSING.finditer(commit.message):
            for text in _ONE.findall(match.group(1)):
                ref = _reference(text, commit)
                key = (ref.kind, ref.repo.lower(), ref.value)
                if key not in found and len(found) < MAX_REFERENCES:
                    found[key] = ref
    return list(found.values())


def _reference(text: str, commit: Commit) -> Reference:
    if text.lower().startswith("crashd#"):
        return Reference("crashd", str(int(text[len("crashd#"):])), text, commit)
    if "/" in text:
        repo, _, number = text.rpartition("#")
        return Reference("github", str(int(number)), text, commit, repo=repo)
    return Reference("jira", text.upper(), text, commit)
