"""A deploy, as ``POST /api/<project>/releases/`` and ``crashd release deploy`` both run it
(docs/releases.md): store the release once per (project, version, environment); on the post
that created it, resolve the tickets its commits fix (then verify them by numbers at once and
enqueue their notifications); then send its patch notes, once.

Patch notes delivery: POST to ``patch_notes_webhook_url`` and ``discord_webhook_url`` within
``notify_timeout_seconds`` each. The claim (``releases.patch_notes_sent_at``) is taken before
sending, with the insert on the creating post; a failed delivery is logged and gives the
claim back, so posting the release again sends them (the post itself still answers 200).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from storage import releases
from storage.tickets import apply_action
from triage.releases import Reference, ReleaseIn, references
from triage.tickets.transitions import FIXED, Change, TicketNotFound, TransitionError
from workers import triage_jobs
from workers.context import WorkerContext
from workers.queue import JobQueue
from workers.triage_report import patch_notes, render_patch_notes

log = logging.getLogger(__name__)

DISCORD_CONTENT_MAX = 2000  # Discord refuses a longer message (400)


def deploy(ctx: WorkerContext, queue: JobQueue | None, *, project_id: int, release: ReleaseIn) -> dict[str, Any]:
    """Record release for the project and do what a deploy does; the API's answer:
    ``{"release", "created", "resolved", "already_resolved", "unknown", "skipped", "patch_notes"}``."""
    configured = bool(ctx.settings.patch_notes_webhook_url or ctx.settings.discord_webhook_url)
    stored, created = releases.record(ctx.engine, project_id=project_id, release=release, claim_notes=configured)
    outcome: dict[str, Any] = {"resolved": [], "already_resolved": [], "unknown": [], "skipped": []}
    if created:
        changes = resolve_referenced(ctx, project_id=project_id, version=release.version,
                                     environment=release.environment, refs=references(release.commits),
                                     outcome=outcome)
        triage_jobs.notify(queue, changes)
    notes = send_patch_notes(ctx, project_id=project_id, release=stored, claimed=created and configured,
                             configured=configured)
    stored["patch_notes_sent_at"] = _sent_at(ctx, stored["id"])  # as it is after sending (or failing)
    return {"release": stored, "created": created, **outcome, "patch_notes": notes}


def _sent_at(ctx: WorkerContext, release_id: int) -> str | None:
    when = releases.notes_claimed_at(ctx.engine, release_id=release_id)
    return when.isoformat() if when else None


# -- resolve by commit ----------------------------------------------------------------------


def resolve_referenced(ctx: WorkerContext, *, project_id: int, version: str, environment: str,
                       refs: list[Reference], outcome: dict[str, Any]) -> list[Change]:
    """Resolve the project's tickets refs name in version (actor ``commit:<author>``, the commit
    and release in the event's details), verify each at once, and fill outcome's lists:
    resolved and already_resolved (ticket ids), unknown (the references as written: no such
    ticket in this project, another project's, a restricted one, a tracker not configured),
    skipped (``{"ticket", "reference", "why"}``: a state resolve does not apply to)."""
    tickets = _match(ctx, project_id, refs)
    changes: list[Change] = []
    for ref in refs:
        ticket = tickets.get((ref.kind, ref.repo.lower(), ref.value))
        if ticket is None:
            outcome["unknown"].append(ref.text)
            continue
        if ticket["id"] in outcome["resolved"] + outcome["already_resolved"]:
            continue  # named twice (crashd#12 and CRASH-7 are one ticket)
        if ticket["state"] in FIXED:
            outcome["already_resolved"].append(ticket["id"])
            continue
        commit = ref.commit
        try:
            changes.append(apply_action(
                ctx.engine, settings=ctx.settings, ticket_id=ticket["id"], action="resolve", fixed_in=version,
                actor=f"commit:{commit.author or 'unknown'}"[:200],
                note=f"fixed by commit {commit.id[:12] or '?'} in release {version} ({environment})",
                extra={"commit": {"id": commit.id, "message": commit.first_line, "author": commit.author},
                       "release": {"version": version, "environment": environment}, "reference": ref.text}))
        except (TransitionError, TicketNotFound) as exc:
            outcome["skipped"].append({"ticket": ticket["id"], "reference": ref.text, "why": str(exc)})
            continue
        outcome["resolved"].append(ticket["id"])
        changes += triage_jobs.verify_resolved(ctx, ticket_id=ticket["id"])
    return changes


def _match(ctx: WorkerContext, project_id: int,
           refs: list[Reference]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The project's tickets by (kind, repo, value) of the references that name them. Tracker keys
    count only for the configured tracker: ``CRASH-7`` when CRASHD_JIRA_PROJECT is CRASH,
    ``owner/repo#12`` when CRASHD_GITHUB_REPO is owner/repo. Restricted tickets never match:
    a commit message is no place to confirm a security report (docs/releases.md)."""
    settings = ctx.settings
    jira = (settings.jira_project or "").upper()
    github = (settings.github_repo or "").lower()
    ids = [int(r.value) for r in refs if r.kind == "crashd" and int(r.value) < 2**63]
    jira_keys = [r.value for r in refs if r.kind == "jira" and jira and r.value.rpartition("-")[0] == jira]
    issues = [r.value for r in refs if r.kind == "github" and github and r.repo.lower() == github]
    rows = releases.referenced_tickets(ctx.engine, project_id=project_id, ids=ids, external_keys=jira_keys + issues)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row["restricted"]:
            continue
        if row["id"] in ids:
            found[("crashd", "", str(row["id"]))] = row
        key = row["external_key"] or ""
        if key in jira_keys:
            found[("jira", "", key)] = row
        if key in issues and github in (row["external_url"] or "").lower():
            found[("github", github, key)] = row
    return found


# -- patch notes ----------------------------------------------------------------------------


def send_patch_notes(ctx: WorkerContext, *, project_id: int, release: dict[str, Any], claimed: bool,
                     configured: bool) -> str:
    """Send the release's patch notes once: ``sent``, ``not configured``, ``already sent``
    (sent before, or being sent by a concurrent post) or ``failed`` (logged; the claim is
    given back so the next post of the release sends them)."""
    if not configured:
        return "not configured"
    if not claimed and releases.claim_notes(ctx.engine, release_id=release["id"]) is None:
        return "already sent"
    try:
        deliver(ctx, project_id=project_id, release=release)
    except (httpx.HTTPError, OSError) as exc:
        log.warning("patch notes of release %s (%s) not delivered: %s", release["version"],
                    release["environment"], exc)
        releases.release_notes_claim(ctx.engine, release_id=release["id"])
        return "failed"
    return "sent"


def deliver(ctx: WorkerContext, *, project_id: int, release: dict[str, Any]) -> None:
    """POST the patch notes (restricted tickets never among them: patch_notes leaves them out)
    to the configured targets. Raises httpx.HTTPError on a failure or an answer >= 400."""
    settings = ctx.settings
    notes = patch_notes(ctx, build=release["version"], project_id=project_id)
    text = render_patch_notes(notes)
    with httpx.Client(timeout=settings.notify_timeout_seconds, follow_redirects=False) as client:
        if settings.patch_notes_webhook_url:
            client.post(settings.patch_notes_webhook_url, json={
                "event": "release", "release": release, "patch_notes": notes, "markdown": text,
            }).raise_for_status()
        if settings.discord_webhook_url:
            content = text if len(text) <= DISCORD_CONTENT_MAX else text[:DISCORD_CONTENT_MAX - 1] + "…"
            client.post(settings.discord_webhook_url, json={
                "content": content, "allowed_mentions": {"parse": []}}).raise_for_status()
