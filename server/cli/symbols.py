"""`crashd symbols upload`: send debug files to a crashd server, skipping those it has.

Walks the paths (a Breakpad layout tree, loose ``.sym`` files, native ELF / Mach-O / PDB files;
zips only when named on the command line), asks ``GET /api/symbols/<debug_file>/<debug_id>
?sha256=`` for each file and uploads the missing ones the way Breakpad's symupload does
(multipart: ``symbol_file`` plus ``debug_file``, ``debug_identifier``, ``code_file``, ``os``,
``cpu``) to ``POST /api/<project>/symbols/``, with an API token (an uploader token of the
project, or an admin's) as ``Authorization: Bearer``. Connection errors and 5xx answers are
retried with backoff; a 4xx is final.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import quote

import httpx

from schemas.settings import Settings
from symbolicator.symbols.cache import MalformedSymbols
from symbolicator.symbols.store import Identity, Names, file_sha256, identify, layout_names
from symbolicator.symbols.ziptree import is_zip

RETRIES = 3
BACKOFF_SECONDS = 0.5  # then 1, 2
_SKIPPED_SUFFIXES = (".tmp", ".part", ".json")


class UploadError(Exception):
    """The server refused a file or could not be reached (after the retries)."""


@dataclass
class Candidate:
    """A file to send: what it is (identities, empty for a zip) and the names to send with it."""

    path: Path
    names: Names
    identities: list[Identity]
    sha256: str
    outcome: str = ""  # uploaded, skipped, failed, ignored
    error: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


def collect(paths: list[str]) -> list[tuple[Path, Path | None]]:
    """(file, root of the walk it came from) for each file under paths, in a stable order.
    Files named on the command line have no root; walked ones skip dot-files, zips and the
    store's own temporary and JSON files."""
    found: list[tuple[Path, Path | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [(p, path) for p in sorted(path.rglob("*"))
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                      and not p.name.endswith(_SKIPPED_SUFFIXES) and p.suffix.lower() != ".zip"]
        else:
            found.append((path, None))
    return found


def examine(path: Path, root: Path | None) -> Candidate:
    """What path is; outcome ``ignored`` when not a debug file, ``failed`` when unreadable or
    contradicting its layout path."""
    names = layout_names(path.relative_to(root).as_posix()) if root else Names()
    try:
        with open(path, "rb") as f:
            zipped = root is None and is_zip(f.read(4))
        if zipped:
            return Candidate(path, names, [], file_sha256(path))
        return Candidate(path, names, identify(path, name=path.name, names=names), file_sha256(path))
    except OSError as exc:
        return Candidate(path, names, [], "", outcome="failed", error=str(exc))
    except MalformedSymbols as exc:
        outcome = "ignored" if exc.reason == "not_symbols" else "failed"
        return Candidate(path, names, [], "", outcome=outcome, error=f"malformed_{exc.reason}")


class Uploader:
    """HTTP to one crashd server, with retries."""

    def __init__(self, url: str, token: str, project: str, *, timeout: float, client: httpx.Client | None = None,
                 backoff: float = BACKOFF_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.backoff = backoff
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self.client.headers["Authorization"] = f"Bearer {token}"

    def has(self, candidate: Candidate) -> bool:
        """Whether the store uploads go to holds this content for every module of the file."""
        if not candidate.identities:
            return False
        for identity in candidate.identities:
            url = f"{self.url}/api/symbols/{quote(identity.debug_file, safe='')}/{identity.debug_id}"
            query = {"project": self.project, "sha256": candidate.sha256}
            response = self._request(partial(self.client.get, url, params=query))
            if response.status_code == 404:
                return False
            if response.status_code != 200:
                raise UploadError(_detail(response))
        return True

    def upload(self, candidate: Candidate) -> list[dict[str, Any]]:
        """POST the file like symupload; the server's file entries. Raises UploadError."""
        fields = _fields(candidate)
        url = f"{self.url}/api/{quote(self.project, safe='')}/symbols/"
        with open(candidate.path, "rb") as f:
            def send() -> httpx.Response:
                f.seek(0)
                return self.client.post(url, data=fields,
                                        files={"symbol_file": (candidate.path.name, f, "application/octet-stream")})

            response = self._request(send)
        if response.status_code != 200:
            raise UploadError(_detail(response))
        try:
            return response.json()["files"]
        except (ValueError, KeyError) as exc:
            raise UploadError(f"not a crashd answer: {response.text[:100]!r}") from exc

    def _request(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """send() until it answers below 500, at most RETRIES more times, backing off."""
        for attempt in range(RETRIES + 1):
            try:
                response = send()
                if response.status_code < 500 or attempt == RETRIES:
                    return response
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise UploadError(f"{type(exc).__name__}: {exc}") from exc
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


def _fields(candidate: Candidate) -> dict[str, str]:
    """symupload's text fields; a fat file (several objects) names only its debug file."""
    if not candidate.identities:
        return {}
    first = candidate.identities[0]
    if len(candidate.identities) > 1:
        return {"debug_file": first.debug_file}
    values = {"debug_file": first.debug_file, "debug_identifier": first.debug_id, "code_file": first.code_file,
              "code_id": first.code_id, "os": first.os, "cpu": first.cpu}
    return {k: v for k, v in values.items() if v}


def _detail(response: httpx.Response) -> str:
    try:
        return f"HTTP {response.status_code} {response.json().get('detail')}"
    except ValueError:
        return f"HTTP {response.status_code}"


class Progress:
    """``[####....] 12/40 libc.so.6.sym`` on stderr: redrawn in place on a terminal, one line
    per file otherwise (CI logs)."""

    WIDTH = 24

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()

    def step(self, name: str, outcome: str) -> None:
        self.done += 1
        filled = self.WIDTH * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total} {name}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            if outcome == "failed" or self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{line} {outcome}\n")
        self.stream.flush()


def upload_paths(paths: list[str], *, url: str, token: str, project: str, as_json: bool, timeout: float,
                 uploader: Uploader | None = None) -> int:
    """Upload what the server lacks; print a summary (JSON with as_json). 1 if any failed."""
    files = collect(paths)
    progress = Progress(len(files), sys.stderr)
    uploader = uploader or Uploader(url, token, project, timeout=timeout)
    done: list[Candidate] = []
    try:
        for path, root in files:
            if path.exists():
                candidate = examine(path, root)
            else:
                candidate = Candidate(path, Names(), [], "", outcome="failed", error="no such file")
            if not candidate.outcome:
                _send(uploader, candidate)
            if candidate.outcome == "failed":
                print(f"error: {path}: {candidate.error}", file=sys.stderr)
            progress.step(path.name, candidate.outcome)
            done.append(candidate)
    finally:
        uploader.close()
    counts = {k: sum(c.outcome == k for c in done) for k in ("uploaded", "skipped", "failed", "ignored")}
    if as_json:
        print(json.dumps({**counts, "files": [
            {"path": str(c.path), "status": c.outcome, "error": c.error, "files": c.files} for c in done]}))
    else:
        ignored = f", ignored {counts['ignored']} (not debug files)" if counts["ignored"] else ""
        print(f"uploaded {counts['uploaded']}, skipped {counts['skipped']}, failed {counts['failed']}{ignored}")
    return 1 if counts["failed"] else 0


def _send(uploader: Uploader, candidate: Candidate) -> None:
    try:
        if uploader.has(candidate):
            candidate.outcome = "skipped"
        else:
            candidate.files = uploader.upload(candidate)
            candidate.outcome = "uploaded"
    except (UploadError, OSError) as exc:
        candidate.outcome, candidate.error = "failed", str(exc)


def cmd_symbols_upload(settings: Settings, args: argparse.Namespace) -> int:
    """Upload debug files to a crashd server, skipping those it already holds (docs/symbols.md)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one progress line per file, not per request
    return upload_paths(args.paths, url=args.url, token=args.token, project=args.project, as_json=args.json,
                        timeout=args.timeout)
