"""Why an ingest request is refused: Discarded, raised anywhere in the ingest wing (the upload
parser, the envelope parser, the endpoints, the crashmover) and answered in one place,
server/ingest/refusal.py, as Antenna's ``breakpad_resource.py`` answers its
``MalformedCrashReport``. A leaf: it imports nothing of the wing, so everything can import it.
"""

from __future__ import annotations

RETRY_AFTER_SECONDS = 60  # the Retry-After of every 503: a dependency is down, a full spool

class Discarded(Exception):
    """An ingest request refused with status_code and a code the client reads (after
    ``Discarded=`` on /submit, as ``{"detail": code}`` elsewhere); why goes to the log. It is
    counted as a discard under reason (the code unless told otherwise). file names the file of
    a symbol upload that was refused; retry_after (seconds) makes a 429 Sentry's rate limit."""

    def __init__(self, status_code: int, code: str, why: str = "", file: str | None = None, *,
                 reason: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(why or code)
        self.status_code = status_code
        self._code = code
        self.why = why or code
        self.reason = reason or code
        self.file = file
        self.retry_after = retry_after

    @property
    def discard_code(self) -> str:
        """What the client reads: ``Discarded=<discard_code>`` or ``{"detail": discard_code}``."""
        return self._code


class MalformedUpload(Discarded):
    """The upload cannot be accepted; reason is a short code such as ``bad_gzip``, answered
    as ``malformed_bad_gzip`` and counted as ``bad_gzip``."""

    status_code = 400

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(type(self).status_code, reason, f"{reason}: {detail}" if detail else reason)
        self.detail = detail

    @property
    def discard_code(self) -> str:
        return f"malformed_{self.reason}"


class UploadTooLarge(MalformedUpload):
    """The body, or what it decompresses to, is past a configured cap (HTTP 413)."""

    status_code = 413

    @property
    def discard_code(self) -> str:
        return self.reason


class SpoolFull(MalformedUpload):
    """The spool folder (``<data_dir>/tmp``) cannot take the upload: 503 with Retry-After,
    the client retries later."""

    status_code = 503

    def __init__(self) -> None:
        super().__init__("spool_full", "no space left in the spool folder")

    @property
    def discard_code(self) -> str:
        return self.reason


class StorageUnavailable(Discarded):
    """Blob store or database failed: the client gets 503 ``storage_unavailable`` and retries.
    Logged as an error, not counted (counting needs the database)."""

    def __init__(self, why: str = "") -> None:
        super().__init__(503, "storage_unavailable", why)
