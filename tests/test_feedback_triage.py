"""Feedback tickets on both backends: the shipped nar-output rule opens a P1 when a second
tester reports the same NAR line; the ticket goes to the trackers, the triage board, the
patch notes ("reported by") and the progress log like a crash ticket (docs/feedback.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from test_triage_e2e import Webhook

from storage.outbox import deliver_due
from workers.triage_report import patch_notes, progress_log, render_patch_notes, render_progress_log

from conftest import Crashd, _crashd, make_settings

LINE = "Villager: Go away, you filthy peasant!"


@pytest.fixture
def hooked(backend: str, services: tuple[str | None, str | None], tmp_path: Path) -> Iterator[tuple[Crashd, Webhook]]:
    hook = Webhook()
    pg, redis = services
    try:
        yield from ((c, hook) for c in _crashd(backend, make_settings(backend, tmp_path, pg, redis, webhook_url=hook.url)))
    finally:
        hook.server.shutdown()


def report(c: Crashd, tester: str, message: str = LINE, category: str = "nar_output") -> str:
    response = c.client.post(f"/api/{c.project.id}/feedback/?key={c.key}", json={
        "message": message, "category": category, "tester_id": tester, "build": "0.9.9-beta1"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def tickets(c: Crashd) -> list[dict[str, Any]]:
    response = c.client.get("/api/tickets?project=game", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()["tickets"]


def test_a_second_tester_reporting_a_nar_line_opens_a_p1(hooked: tuple[Crashd, Webhook]) -> None:
    c, hook = hooked
    report(c, "tester-a")
    report(c, "tester-a", LINE.upper())  # the same tester again: still one tester
    for i in range(5):  # five testers on another category: no rule for ui, crash rules never fire on feedback
        report(c, f"ui-{i}", "The inventory button does nothing", "ui")
    c.drain()
    assert tickets(c) == []

    report(c, "tester-b", "villager:  go away you filthy peasant")  # the same line, other case and punctuation
    c.drain()
    deliver_due(c.state.ctx.engine, c.settings)
    [ticket] = tickets(c)
    assert (ticket["priority"], ticket["rule"], ticket["kind"], ticket["component"]) == (
        "P1", "nar-output", "feedback", "nar_output")
    assert (ticket["testers_at_firing"], ticket["crashes_at_firing"]) == (2, 3)
    assert ticket["signature"] == "feedback | nar_output | go away you filthy peasant"
    assert "3 reports" in ticket["reason_text"]
    assert [(b["event"], b["ticket"]["id"]) for b in hook.bodies] == [("opened", ticket["id"])]

    board = c.client.get("/api/triage?project=game", headers=c.admin).json()
    assert [t["ticket_id"] for t in board["open_tickets"]] == [ticket["id"]]
    response = c.client.post(f"/api/tickets/{ticket['id']}/resolve", json={"fixed_in": "0.9.9-beta2"}, headers=c.admin)
    assert response.status_code == 200, response.text
    notes = render_patch_notes(patch_notes(c.state.ctx, build="0.9.9-beta2"))
    assert "reported by tester-a (2), tester-b (1)" in notes
    log = render_progress_log(progress_log(c.state.ctx))
    assert f"#{ticket['id']} nar_output: feedback \\| nar_output \\| go away you filthy peasant | P1 | resolved" in log


def test_feedback_groups_cannot_be_merged(hooked: tuple[Crashd, Webhook]) -> None:
    c, _ = hooked
    report(c, "tester-a")
    report(c, "tester-b", "Get lost, stranger")
    groups = c.client.get("/api/groups?project=game&kind=feedback", headers=c.admin).json()["groups"]
    a, b = (g["id"] for g in groups)
    response = c.client.post(f"/api/groups/{a}/merge", json={"into": b}, headers=c.admin)
    assert response.status_code == 400 and "feedback groups cannot be merged" in response.json()["detail"]
