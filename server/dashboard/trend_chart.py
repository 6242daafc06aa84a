"""The trend chart of the group and builds pages (docs/rates.md, Trends): storage/trends.py's
series drawn as server-side SVG, no script. One figure, three panels on one day axis: crashes
per session (a line per build), hangs per session (the same), feedback reports (bars stacked
by build); a legend with each build's totals over the window; every point says its numbers
in a tooltip (``<title>``: crashes, sessions, crashes per 1,000 session-hours, hangs, feedback).

Pure: data in, markup out. Every text that comes from data (a build) goes through
markupsafe.escape; the rest is numbers and our own words.

Also the absolute rate axis of the per-build tables (``rate_position``): a fixed logarithmic
scale from 0.1 % to 100 % crashes per session, the same on every page and every row, so a bar
says how bad a rate is, not how it compares to the worst row.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, Callable, Iterable, Mapping, Sequence

from markupsafe import Markup, escape

# Eight builds at most (storage/trends.MAX_BUILDS), each its colour, in version order.
PALETTE = ("#2f5fd0", "#e0700f", "#2e7d32", "#c62828", "#7b1fa2", "#00838f", "#8d6e00", "#6d4c41")
WIDTH, LEFT, RIGHT = 1200, 62, 14
PANELS = (("crashes_per_session", "Crashes per session", 170), ("hangs_per_session", "Hangs per session", 70),
          ("feedback", "Feedback reports", 70))
TOP, GAP, BOTTOM = 22, 42, 22  # room for a panel's title above it, and the day labels below the last
X_LABELS = 8  # day labels at most
AXIS_LOW, AXIS_DECADES = 0.001, 3  # the tables' rate axis: 0.1 % .. 100 %
AXIS_TICKS = (("0.1 %", 0.0), ("1 %", 100 / 3), ("10 %", 200 / 3), ("100 %", 100.0))  # label, left %


def rate_position(rate: float | None) -> float:
    """Where a rate (crashes per session) sits on the tables' fixed log axis, 0..1: 0 for none
    (or unknown); a rate below 0.1 % still shows a sliver; 100 % and over fill it."""
    if not rate or rate <= 0:
        return 0.0
    where = (math.log10(rate) - math.log10(AXIS_LOW)) / AXIS_DECADES
    return min(1.0, max(0.02, where))


def nice_top(value: float, empty: float = 1.0) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above value (empty for nothing)."""
    if value <= 0:
        return empty
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value * (1 - 1e-9))


def percent(value: float | None) -> str:
    """A rate as ``2.5 %`` (short: for axis ticks and tooltips); an en dash when unknown."""
    return "–" if value is None else f"{value * 100:.3g} %"


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def count(value: float) -> str:
    """An axis tick of a count: ``4``, ``2.5``."""
    return f"{value:g}"


def _text(x: float, y: float, words: str, anchor: str = "start", cls: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="11"{css}>{escape(words)}</text>'


class Frame:
    """The shared day axis: where day i's centre is."""

    def __init__(self, days: Sequence[date]) -> None:
        self.days = list(days)
        self.step = (WIDTH - LEFT - RIGHT) / max(1, len(self.days))

    def x(self, index: int) -> float:
        return LEFT + (index + 0.5) * self.step

    def labels(self, y: float) -> list[str]:
        """Day labels (``May 3``) every few days, today always among them."""
        every = max(1, math.ceil(len(self.days) / X_LABELS))
        return [_text(self.x(i), y, f"{day:%b} {day.day}", "middle") for i, day in enumerate(self.days)
                if (len(self.days) - 1 - i) % every == 0]


def _grid(top: float, height: float, peak: float, label: Callable[[float], str]) -> list[str]:
    """Three horizontal grid lines (0, half, top) with their values on the left."""
    out = []
    for share in (0.0, 0.5, 1.0):
        y = top + height * (1 - share)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(_text(LEFT - 6, y + 4, label(peak * share), "end"))
    return out


def tooltip(build: str, point: Mapping[str, Any]) -> str:
    """What a point of a build says when pointed at (plain text; escaped where it is drawn)."""
    per_hours = point["crashes_per_1k_session_hours"]
    return (f"{build or '(none)'} · {_day(point['day']).isoformat()}: {point['crashes']} crashes in "
            f"{point['sessions']} sessions ({percent(point['crashes_per_session'])})"
            f"{f', {per_hours:.3g} per 1,000 session-hours' if per_hours is not None else ''}; "
            f"{point['hangs']} hangs ({percent(point['hangs_per_session'])}); {point['feedback']} feedback")


def _lines(frame: Frame, builds: Sequence[Mapping[str, Any]], key: str, top: float, height: float,
           peak: float) -> list[str]:
    """One polyline per run of known values of each build, and a dot with a tooltip per value."""
    out = []
    for colour, build in _coloured(builds):
        run: list[str] = []
        dots: list[str] = []
        for i, point in enumerate(build["series"]):
            value = point[key]
            if value is None:
                out.extend(_polyline(run, colour))
                run = []
                continue
            x, y = frame.x(i), top + height * (1 - min(value, peak) / peak)
            run.append(f"{x:.1f},{y:.1f}")
            dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                        f'<title>{escape(tooltip(build["build"], point))}</title></circle>')
        out.extend(_polyline(run, colour) + dots)
    return out


def _coloured(builds: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Each build with its colour (PALETTE's, in turn)."""
    return [(PALETTE[i % len(PALETTE)], build) for i, build in enumerate(builds)]


def _polyline(run: list[str], colour: str) -> list[str]:
    if len(run) < 2:
        return []
    return [f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2"/>']


def _bars(frame: Frame, builds: Sequence[Mapping[str, Any]], top: float, height: float, peak: float) -> list[str]:
    """Feedback per day as bars stacked by build."""
    out = []
    width = max(1.0, frame.step * 0.6)
    for i in range(len(frame.days)):
        base = top + height
        for colour, build in _coloured(builds):
            point = build["series"][i]
            if not point["feedback"]:
                continue
            tall = height * point["feedback"] / peak
            base -= tall
            out.append(f'<rect x="{frame.x(i) - width / 2:.1f}" y="{base:.1f}" width="{width:.1f}" '
                       f'height="{tall:.1f}" fill="{colour}"><title>{escape(tooltip(build["build"], point))}'
                       f'</title></rect>')
    return out


def _panel(frame: Frame, builds: Sequence[Mapping[str, Any]], key: str, title: str, top: float,
           height: float) -> list[str]:
    """One panel: its title, grid and values (lines for rates, stacked bars for feedback)."""
    if key == "feedback":
        totals = [sum(b["series"][i]["feedback"] for b in builds) for i in range(len(frame.days))]
        peak = float(max(2, nice_top(max(totals, default=0))))
        body = _bars(frame, builds, top, height, peak)
        label: Callable[[float], str] = count
    else:
        values = [p[key] for b in builds for p in b["series"] if p[key] is not None]
        peak = nice_top(max(values, default=0), empty=0.01)  # all 0: an axis to 1 %
        body = _lines(frame, builds, key, top, height, peak)
        label = percent
    out = [_text(LEFT, top - 8, title, cls="panel-title"), *_grid(top, height, peak, label), *body]
    if not body:
        out.append(_text((LEFT + WIDTH - RIGHT) / 2, top + height / 2, _nothing(key, builds), "middle", "none"))
    return out


def _nothing(key: str, builds: Sequence[Mapping[str, Any]]) -> str:
    if key == "feedback":
        return "no feedback reports"
    if not any(p["sessions"] for b in builds for p in b["series"]):
        return "no sessions reported: rates unknown"
    return "none"


def legend(builds: Sequence[Mapping[str, Any]]) -> str:
    """Each build's colour and totals over the window."""
    items = []
    for colour, build in _coloured(builds):
        series = build["series"]
        crashes, sessions = sum(p["crashes"] for p in series), sum(p["sessions"] for p in series)
        timed = [p for p in series if p["session_hours"]]
        hours = sum(p["session_hours"] for p in timed)
        per_hours = sum(p["crashes"] for p in timed) / hours * 1000 if hours else None
        words = (f"{crashes} {'crash' if crashes == 1 else 'crashes'} in {sessions} "
                 f"{'session' if sessions == 1 else 'sessions'} ({percent(crashes / sessions if sessions else None)})"
                 f"{f' · {per_hours:.3g} per 1,000 session-hours' if per_hours is not None else ''}"
                 f" · {sum(p['hangs'] for p in series)} hangs · {sum(p['feedback'] for p in series)} feedback")
        items.append(f'<li><span class="swatch" style="background: {colour}"></span>'
                     f'<span class="mono">{escape(build["build"] or "(none)")}</span> '
                     f'<span class="muted">{escape(words)}</span></li>')
    return f'<ul class="trend-legend">{"".join(items)}</ul>'


def trend_chart(trend: Mapping[str, Any], *, label: str) -> Markup:
    """The figure for storage/trends.trends' result (dates or ISO strings); label names what
    is counted (``crashes of this group``). A paragraph instead when no build has data."""
    builds: list[Mapping[str, Any]] = list(trend["builds"])
    frame = Frame([_day(d) for d in trend["days"]])
    if not builds or not _has_data(builds):
        return Markup(f'<p class="muted trend-empty">No sessions, crashes or feedback in the last '
                      f'{len(frame.days)} days.</p>')
    parts: list[str] = []
    top = float(TOP)
    for key, title, tall in PANELS:
        parts.extend(_panel(frame, builds, key, title, top, tall))
        top += tall + GAP
    height = top - GAP + BOTTOM
    parts.extend(frame.labels(height - 6))
    summary = f"{label}: daily rates of {len(builds)} builds over {len(frame.days)} days"
    svg = (f'<svg class="trend-chart" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
           f'role="img" aria-label="{escape(summary)}"><title>{escape(summary)}</title>{"".join(parts)}</svg>')
    return Markup(f'<figure class="trend">{svg}<figcaption>{legend(builds)}</figcaption></figure>')


def _has_data(builds: Iterable[Mapping[str, Any]]) -> bool:
    return any(p["sessions"] or p["crashes"] or p["hangs"] or p["feedback"] for b in builds for p in b["series"])
