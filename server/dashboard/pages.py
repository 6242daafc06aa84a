"""Rendering of the dashboard's HTML pages: one Jinja2 environment with autoescaping on, and
``render`` which adds what every page needs (the signed-in user, the CSRF token).

The filters and globals registered here are the only places that build HTML in Python, and
they only ever put numbers into it (sparklines, bar widths); every text goes through Jinja's
autoescaping in the templates.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from server import auth
from server.state import state_of
from triage.wording import noun, plural

SERVER_DIR = Path(__file__).parent.parent  # templates/ and static/ sit in server/
TEMPLATE_DIR = SERVER_DIR / "templates"
STATIC_DIR = SERVER_DIR / "static"

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))  # autoescape is on for .html

# Defence in depth behind autoescaping: only our own script file runs (no inline script, no
# inline event handler), nothing loads from another host, no page frames ours. Inline styles
# stay allowed for the bar widths.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """The template ``name`` rendered with context plus ``user`` (a Principal or None) and
    ``csrf_token`` (for every form), with SECURITY_HEADERS."""
    state = state_of(request)
    page = dict(context or {})
    if "user" not in page:
        page["user"] = auth.principal(request, state)
    page.setdefault("csrf_token", auth.csrf_token(request))
    response = templates.TemplateResponse(request, name, page, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


# -- filters: times, sizes, rates -----------------------------------------------------------


def as_datetime(value: Any) -> datetime | None:
    """A datetime (naive means UTC) or an ISO 8601 string as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def when(value: Any) -> str:
    """``2026-11-25 14:03 UTC`` (empty for None)."""
    moment = as_datetime(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def iso(value: Any) -> str:
    """ISO 8601 UTC, for ``<time datetime=...>`` and the countdown script."""
    moment = as_datetime(value)
    return moment.astimezone(timezone.utc).isoformat() if moment else ""


def duration(seconds: float | int | None) -> str:
    """A span as its two largest units: ``3d 4h``, ``5h 12m``, ``42m``, ``30s``."""
    if seconds is None:
        return ""
    left = int(abs(seconds))
    days, hours, minutes = left // 86400, left % 86400 // 3600, left % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{left}s"


def ago(value: Any, now: datetime | None = None) -> str:
    """``5h 12m ago`` (or ``in ...`` for a future time)."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    return f"{duration(seconds)} ago" if seconds >= 0 else f"in {duration(seconds)}"


def size(value: int | None) -> str:
    """Bytes as ``512 B``, ``12.3 KiB``, ``4.0 MiB``."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""


def rate(value: float | None) -> str:
    """Crashes per session as ``1.23 %``; an unknown rate (no sessions) as an en dash."""
    return "–" if value is None else f"{value * 100:.2f} %"


def change(value: float | None) -> str:
    """A relative change as ``-45 %`` / ``+12 %`` (en dash when unknown)."""
    return "–" if value is None else f"{value * 100:+.0f} %"


# -- globals: links and charts ---------------------------------------------------------------


def url_with(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """path with params (a request's query) updated by changes; empty values are dropped.
    Sorting and pagination links keep every filter this way."""
    merged = {**dict(params), **{k: v for k, v in changes.items()}}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def sparkline(values: list[int], width: int = 84, height: int = 18) -> Markup:
    """Daily counts (oldest first) as an inline SVG bar chart; only numbers go into it."""
    counts = [max(0, int(v)) for v in values] or [0]
    top = max(counts) or 1
    step = width / len(counts)
    bars = []
    for index, count in enumerate(counts):
        tall = 1 if count == 0 else max(2.0, height * count / top)
        bars.append(f'<rect x="{index * step:.1f}" y="{height - tall:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{tall:.1f}" class="{"zero" if count == 0 else "hit"}"><title>{count}</title></rect>')
    total = sum(counts)
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'role="img" aria-label="{plural(total, "crash")} in {plural(len(counts), "day")}">{"".join(bars)}</svg>')


def bar_width(value: float | int | None, top: float | int | None) -> str:
    """A CSS width for a bar of value out of top: ``37.5%`` (``0%`` when unknown)."""
    if not value or not top:
        return "0%"
    return f"{min(100.0, 100.0 * float(value) / float(top)):.1f}%"


templates.env.filters.update(when=when, iso=iso, ago=ago, duration=duration, size=size, rate=rate, change=change,
                            plural=plural, noun=noun)  # "1 crash", "2 crashes": triage/wording.py
templates.env.globals.update(url_with=url_with, sparkline=sparkline, bar_width=bar_width)
