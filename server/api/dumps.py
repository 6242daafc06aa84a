"""What a minidump download needs besides the raw bytes (server/api/crashes.py crash_minidump
and its dashboard twin server/dashboard/crash.py minidump_download):

- ``?vendor_safe=1``: a copy with the memory the stack walks do not need zeroed, walked again
  with the crash's project symbols and compared before it is sent (symbolicator/vendor_safe.py,
  docs/privacy.md);
- the refusals, one ``DumpRefused`` (an HTTPException: the JSON API lets it through, the
  dashboard renders it as a page): 404 no minidump (a Sentry event), 410 the raw dump was
  deleted after CRASHD_RAW_DUMP_DAYS or its blob is gone, 409 no vendor-safe copy.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from schemas.tables import Crash
from server.state import ServerState
from storage.blobs import BlobNotFound
from symbolicator.vendor_safe import NotVendorSafe, VendorSafe, vendor_safe

YES = ("1", "true", "yes")


class DumpRefused(HTTPException):
    """A dump download that cannot be given: ``status_code`` and ``detail``, in words."""


def raw_dump_deleted(crash: Crash) -> str | None:
    """``raw dump deleted after 30 days`` when retention deleted the crash's raw dump
    (storage/retention.py), else None."""
    deleted = (crash.processed or {}).get("raw_dump") if crash.minidump_key is None else None
    if not isinstance(deleted, dict):
        return None
    days = deleted.get("after_days")
    return f"raw dump deleted after {days:g} days" if isinstance(days, (int, float)) else "raw dump deleted"


def no_dump(crash: Crash) -> DumpRefused:
    """The refusal for a crash without its minidump: 410 when retention deleted it, 404 for
    a Sentry event that never had one (docs/sentry.md)."""
    deleted = raw_dump_deleted(crash)
    if deleted:
        return DumpRefused(410, f"{deleted} (CRASHD_RAW_DUMP_DAYS); the processed report stays")
    return DumpRefused(404, "this crash has no minidump")


def wants_vendor_safe(request: Request) -> bool:
    """Whether the query asks for the vendor-safe copy (``?vendor_safe=1``, ``true`` or ``yes``)."""
    return request.query_params.get("vendor_safe", "").lower() in YES


async def vendor_safe_download(state: ServerState, crash: Crash) -> Response:
    """The vendor-safe copy of the crash's dump as a download (``<crash_id>-vendor-safe.dmp``;
    ``X-Crashd-Vendor-Safe`` says how many bytes were zeroed). Raises DumpRefused."""
    made = await run_in_threadpool(_make, state, crash)
    return Response(made.data, media_type="application/x-dmp", headers={
        "Content-Disposition": f'attachment; filename="{crash.crash_id}-vendor-safe.dmp"',  # crash ids are ASCII
        "X-Crashd-Vendor-Safe": f"zeroed={made.zeroed}; kept-stack={made.kept}; threads-compared={made.threads}",
    })


def _make(state: ServerState, crash: Crash) -> VendorSafe:
    """Read the dump and make its copy with the crash's project symbols (the store processing
    walked it with). Raises DumpRefused."""
    if crash.minidump_key is None:
        raise no_dump(crash)
    try:
        raw = state.ctx.blobs.read_bytes(crash.minidump_key)
    except BlobNotFound:
        raise DumpRefused(410, "blob missing from the store") from None
    try:
        return vendor_safe(raw, state.ctx.symbols.for_project(crash.project_id))
    except NotVendorSafe as exc:
        raise DumpRefused(409, f"no vendor-safe copy: {exc}; nothing was sent") from None
