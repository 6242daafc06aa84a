"""The triage report: what the daily triage meeting looks at (``build_report``), the triage
board of the dashboard and ``GET /api/triage`` (``triage_board``), the retest list of a fix
build (``patch_notes``) and the P0/P1 log (``progress_log``), each gathered as a plain dict
and rendered as Markdown (docs/triage.md).

It reads the database and takes the fix's numbers from workers/triage_jobs.fix_numbers, so it
lives in workers/ (server/api, server/dashboard and server/cli/triage.py call it; storage/ cannot import workers/).
The time of the last report is kept in ``<data_dir>/triage-last-report``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.tables import utcnow
from storage import dashboard_queries, security, triage_queries, turnaround
from storage.scope import ProjectScope
from storage.tickets import Restricted
from triage.kinds import FEEDBACK
from triage.turnaround import summarize, summary_lines
from workers.context import WorkerContext
from workers.triage_jobs import fix_numbers

LAST_REPORT_FILE = "triage-last-report"


def time_left(due_at: str, now: datetime) -> str:
    """"12h left" or "overdue by 3h" (whole hours; minutes under an hour)."""
    delta = datetime.fromisoformat(due_at) - now
    seconds = abs(delta.total_seconds())
    amount = f"{int(seconds // 3600)}h" if seconds >= 3600 else f"{int(seconds // 60)}m"
    return f"{amount} left" if delta.total_seconds() >= 0 else f"overdue by {amount}"


def cell(value: Any) -> str:
    """value as the text of one Markdown table cell: None as empty, every ``|`` escaped as
    ``\\|`` (signatures such as ``hang | nar::wait`` would otherwise split the row; GitHub's
    tables take the escape inside code spans too) and line breaks as spaces. Every table of
    this module puts user data (signatures, titles, components, builds, notes) through it."""
    if value is None:
        return ""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def code(value: Any) -> str:
    """value as a code span inside a table cell (empty for None or "")."""
    return f"`{cell(value)}`" if value not in (None, "") else ""


# -- crashd triage report -------------------------------------------------------------------


def build_report(ctx: WorkerContext, *, since: datetime, last_report: datetime | None,
                 project_id: ProjectScope = None, now: datetime | None = None) -> dict[str, Any]:
    """What the triage meeting looks at, JSON-ready (project_id: one project, a set of them, or all)."""
    now = now or utcnow()
    engine = ctx.engine
    # the board's own lists (restricted tickets never in the report): a regressed P0 is in both
    lists = dashboard_queries.active_tickets(engine, project_id=project_id, now=dashboard_queries.as_utc(now))
    active = {key: [report_ticket(t, now) for t in tickets] for key, tickets in lists.items()}
    awaiting = triage_queries.list_tickets(engine, project_id=project_id, states=["resolved"])
    projects: dict[int, Any] = {}  # each project's sessions and builds, read once for all its tickets
    for ticket in awaiting:
        result = fix_numbers(ctx, ticket, projects)
        ticket["verification"] = {**result.details(), "summary": result.summary()}
    times = turnaround.turnaround(engine, project_id=project_id, now=now, p1_due_hours=ctx.settings.p1_due_hours)
    return {
        "generated_at": now.isoformat(), "since": since.isoformat(),
        "last_report": last_report.isoformat() if last_report else None,
        "new_groups": triage_queries.new_groups(engine, since=since, project_id=project_id),
        "top_groups": triage_queries.top_groups(engine, since=since, project_id=project_id),
        "open_tickets": active["open_tickets"], "regressions": active["regressions"],
        "awaiting_verification": awaiting,
        # P0s whose fix is resolved but not yet on staging (docs/triage.md, Turnaround)
        "awaiting_deploy": [t for t in times["tickets"] if t["priority"] == "P0" and t["state"] == "resolved"
                            and t["deployed_at"] is None and not t["restricted"]],
        "verified": triage_queries.events_since(engine, since=last_report or since, actions=["verified"],
                                                project_id=project_id),
    }


def report_ticket(ticket: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A ticket of dashboard_queries.active_tickets as the report has it: JSON-ready, with
    ``id``, ``state`` and ``time_left``."""
    out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in ticket.items()}
    out.update(id=ticket["ticket_id"], state=ticket["status"], time_left=time_left(out["due_at"], now))
    return out


def render_report(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [f"# Triage report {report['generated_at'][:16].replace('T', ' ')} UTC", "",
             f"Crashes since {report['since'][:16].replace('T', ' ')} UTC; verified since "
             + (f"the last report ({report['last_report'][:16].replace('T', ' ')} UTC)" if report["last_report"]
                else "then (no earlier report)") + ".", ""]

    def section(title: str, rows: list[Any], header: str, line: Any) -> None:
        lines.extend([f"## {title} ({len(rows)})", ""])
        lines.extend([header, "|" + "---|" * header.count("|", 1)] + [line(r) for r in rows] if rows else ["None."])
        lines.append("")

    ticket_header = "| Ticket | Priority | Title | Testers | Crashes | Due |"
    def ticket_line(t: dict[str, Any]) -> str:
        priority = f"{t['priority']} regressed" if t["state"] == "regressed" else t["priority"]
        return f"| #{t['id']} | {priority} | {cell(t['title'])} | {t['tester_count']} | {t['crash_count']} | {t['time_left']} |"

    section("Open P0/P1", report["open_tickets"], ticket_header, ticket_line)
    section("Regressions", report["regressions"], ticket_header, ticket_line)
    section("New groups", report["new_groups"], "| Group | Signature | Component | Testers | Crashes |",
            lambda g: f"| {g['id']} | {code(g['signature'])} | {cell(g['component'])} | {g['tester_count']} | "
                      f"{g['crash_count']} |")
    section("Top groups by testers", report["top_groups"], "| Group | Signature | Component | Testers | Crashes |",
            lambda g: f"| {g['group_id']} | {code(g['signature'])} | {cell(g['component'])} | {g['testers']} | {g['crashes']} |")
    section("P0 resolved, not yet deployed to staging", report.get("awaiting_deploy", []),
            "| Ticket | Title | Fixed in | Resolved | Due |",
            lambda t: f"| #{t['id']} | {cell(t['title'])} | {cell(t['fixed_in'])} | "
                      f"{(t['resolved_at'] or '')[:16].replace('T', ' ')} | "
                      f"{time_left(t['due_at'], datetime.fromisoformat(report['generated_at']))} |")
    section("Resolved, awaiting verification", report["awaiting_verification"], "| Ticket | Title | Fixed in | Numbers |",
            lambda t: f"| #{t['id']} | {cell(t['title'])} | {cell(t['fixed_in'])} | {cell(t['verification']['summary'])} |")
    section("Verified", report["verified"], "| Ticket | Title | Fixed in | How |",
            lambda e: f"| #{e['ticket_id']} | {cell(e['title'])} | {cell(e['fixed_in'])} | {cell(how_verified(e))} |")
    return "\n".join(lines)


def triage_board(ctx: WorkerContext, *, project_id: ProjectScope, now: datetime,
                 show_restricted: Restricted = False) -> dict[str, Any]:
    """storage.dashboard_queries.triage_board, each resolved ticket with ``verification`` (the
    numbers of its fix as they are now) and ``report_markdown``: the daily report of
    ``crashd triage report`` over the last 24 hours (never with restricted tickets' text: the
    board shows those to whom show_restricted allows). Reading the board never moves the CLI's
    last-report mark."""
    found = dashboard_queries.triage_board(ctx.engine, project_id=project_id, now=now, show_restricted=show_restricted)
    report = build_report(ctx, since=now - timedelta(hours=24), last_report=None, project_id=project_id, now=now)
    numbers = {t["id"]: t["verification"] for t in report["awaiting_verification"]}
    for ticket in found["awaiting_verification"]:
        ticket["verification"] = numbers.get(ticket["ticket_id"])
    times = turnaround.turnaround(ctx.engine, project_id=project_id, now=now, show_restricted=show_restricted,
                                  p1_due_hours=ctx.settings.p1_due_hours)
    return {**found, "report_markdown": render_report(report), "turnaround": times}


def how_verified(event: dict[str, Any]) -> str:
    """"by numbers: ..." for the automatic verification, else who verified it by hand."""
    details = event.get("details") or {}
    if details.get("method") == "rates":
        p = details.get("p_value")
        return (f"by numbers: {details['base_crashes']}/{details['base_sessions']} crashes/sessions before, "
                f"{details['target_crashes']}/{details['target_sessions']} from the fix on"
                + (f", p={p:.3g}" if p is not None else ""))
    return f"by hand ({event['actor']})" + (f": {details['note']}" if details.get("note") else "")


def read_mark(path: Path) -> datetime | None:
    """When the last report was made (None: never, or an unreadable file)."""
    try:
        return datetime.fromisoformat(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_mark(path: Path, when: datetime) -> None:
    """Remember when this report was made (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(when.isoformat() + "\n")
    tmp.rename(path)


# -- crashd patch-notes ---------------------------------------------------------------------


def patch_notes(ctx: WorkerContext, *, build: str, project_id: int | None = None) -> dict[str, Any]:
    """The tickets fixed in build (resolved or verified) and the testers who hit each group."""
    tickets = triage_queries.list_tickets(ctx.engine, project_id=project_id, states=["resolved", "verified"],
                                          fixed_in=build)
    for ticket in tickets:
        ticket["testers"] = [{**t, "last_seen": t["last_seen"].isoformat()}
                             for t in triage_queries.group_testers(ctx.engine, group_id=ticket["group_id"])]
    testers: dict[str, list[str]] = {}
    for ticket in tickets:
        for tester in ticket["testers"]:
            testers.setdefault(tester["tester_id"], []).append(ticket["signature"])
    return {"build": build, "fixed": tickets, "testers": dict(sorted(testers.items()))}


def render_patch_notes(notes: dict[str, Any]) -> str:
    """Patch notes as Markdown: each fixed crash (or tester feedback: "reported by") with its
    testers, then whom to ask to retest."""
    lines = [f"# Crash fixes in {notes['build']}", ""]
    if not notes["fixed"]:
        return "\n".join(lines + ["No ticket is resolved in this build.", ""])
    for t in notes["fixed"]:
        who = ", ".join(f"{x['tester_id']} ({x['crash_count']})" for x in t["testers"]) or "no known tester"
        verb = "reported by" if t.get("kind") == FEEDBACK else "hit by"  # feedback tickets: the testers' reports
        lines.append(f"- **{t['title']}** (ticket #{t['id']}, {t['priority']}, {t['state']}): {verb} {who}")
    lines += ["", f"## Please retest on {notes['build']}", ""]
    lines += [f"- {tester}: {', '.join(f'`{s}`' for s in sigs)}" for tester, sigs in notes["testers"].items()]
    return "\n".join(lines + [""])


# -- crashd progress-log --------------------------------------------------------------------


def progress_log(ctx: WorkerContext, *, project_id: int | None = None,
                 include_restricted: bool = False) -> list[dict[str, Any]]:
    """Every P0/P1 ticket, oldest first, with how it was verified (None: not yet). Security
    reports' restricted tickets are listed too (``restricted: true``) with their disclosure
    ``timeline`` (steps, times, actors) but without their text unless include_restricted: the
    title is then "Restricted security report #N" (docs/security-reports.md). Each ticket has
    its ``turnaround`` (storage/turnaround.py: opened -> deployed hours, due time, on time)."""
    tickets = sorted(triage_queries.list_tickets(ctx.engine, project_id=project_id, show_restricted=True),
                     key=lambda t: t["id"])
    found = turnaround.turnaround(ctx.engine, project_id=project_id, show_restricted=include_restricted,
                                  p1_due_hours=ctx.settings.p1_due_hours)
    times = {t["id"]: t for t in found["tickets"]}
    for ticket in tickets:
        ticket["turnaround"] = times.get(ticket["id"])
        history = (triage_queries.get_ticket(ctx.engine, ticket_id=ticket["id"], show_restricted=True)
                   or {}).get("history", [])
        verified = [e for e in history if e["action"] == "verified"]
        ticket["verified"] = how_verified(verified[-1]) if verified and ticket["state"] == "verified" else None
        if ticket["restricted"]:
            report = security.report_of(ctx.engine, ticket_id=ticket["id"]) or {}
            ticket["timeline"] = [{k: v for k, v in step.items() if include_restricted or k != "note"}
                                  for step in report.get("timeline", [])]
            if not include_restricted:
                ticket.update(title=f"Restricted security report #{ticket['id']}", reason_text=None)
    return tickets


def render_progress_log(tickets: list[dict[str, Any]]) -> str:
    """The P0/P1 log as a Markdown table for the project's progress log; security reports in a
    section of their own (their disclosure timeline; no text unless it was asked for)."""
    lines = ["# Crash progress log (P0/P1)", "", "| Opened | Signature | Ticket | Priority | State | Fix build | Verified |",
             "|---|---|---|---|---|---|---|"]
    for t in (t for t in tickets if not t.get("restricted")):
        # a ticket merged into another holds no group (no signature of its own): it names the survivor
        state = f"duplicate of #{t['merged_into']}" if t.get("merged_into") else t["state"]
        lines.append(f"| {t['created_at'][:10]} | {code(t.get('signature'))} | #{t['id']} {cell(t['title'])} | "
                     f"{t['priority']} | {state} | {cell(t['fixed_in'])} | {cell(t['verified'])} |")
    restricted = [t for t in tickets if t.get("restricted")]
    if restricted:
        lines += ["", "## Security", "", "| Received | Ticket | Priority | State | Fix build | Timeline |",
                  "|---|---|---|---|---|---|"]
        for t in restricted:
            steps = ", ".join(f"{step['step']} {step['at'][:10]}" for step in t.get("timeline", []))
            lines.append(f"| {t['created_at'][:10]} | #{t['id']} {cell(t['title'])} | {t['priority']} | {t['state']} | "
                         f"{cell(t['fixed_in'])} | {cell(steps)} |")
    return "\n".join(lines + render_turnaround([t for t in tickets if t.get("turnaround")]) + [""])


TURNAROUND_WORDS = {"on_time": "on time", "late": "late", "overdue": "overdue", "pending": "not yet due",
                    "closed": "closed"}


def render_turnaround(tickets: list[dict[str, Any]]) -> list[str]:
    """The progress log's "## Turnaround" lines: the summary per priority, then per ticket the
    hours from opened to deployed to staging against its due time (docs/triage.md)."""
    rows = [t["turnaround"] for t in tickets]
    lines = ["", "## Turnaround", ""] + [f"- {line}" for line in summary_lines(summarize(rows))]
    lines += ["", "| Ticket | Priority | Opened | Deployed to staging | Hours | Due | On time |", "|---|---|---|---|---|---|---|"]
    for t in tickets:
        r = t["turnaround"]
        deployed = f"{r['deployed_at'][:16].replace('T', ' ')} ({r['deployed_by'].replace('_', ' ')}, {cell(r['fixed_in'])})" \
            if r["deployed_at"] else ""
        hours = f"{r['hours_to_deploy']:g} h" if r["hours_to_deploy"] is not None else ""
        lines.append(f"| #{t['id']} {cell(t['title'])} | {r['priority']} | {r['opened_at'][:16].replace('T', ' ')} | "
                     f"{deployed} | {hours} | {r['due_at'][:16].replace('T', ' ')} | {TURNAROUND_WORDS[r['status']]} |")
    return lines
