"""workers/triage_report.py: the Markdown of the daily report, the board's "Copy as Markdown"
and the progress log keep their tables whole when user data holds a ``|`` (issue 17,
friction 3); the board and the daily report list the same open P0/P1 tickets (friction 4)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from test_dashboard_pages import signed_in
from test_turnaround import H, add_event, add_ticket

from schemas.tables import Crash, CrashGroup, utcnow
from server.dashboard.pages import templates
from storage.db import session
from triage.wording import noun, plural
from workers.triage_report import build_report, cell, progress_log, render_progress_log, render_report, triage_board

from conftest import Crashd

HANG = "hang | nar::wait"
UNESCAPED = re.compile(r"(?<!\\)\|")


def table_rows_whole(markdown: str) -> int:
    """Assert every row of every table has as many unescaped ``|`` as its header; return how
    many table rows there were."""
    header, rows = None, 0
    for line in markdown.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        if header is None:
            header = len(UNESCAPED.findall(line))
            continue
        assert len(UNESCAPED.findall(line)) == header, line
        rows += 1
    return rows


def add_group_with_crash(c: Crashd, signature: str, *, component: str | None = None) -> int:
    assert c.project.id is not None
    now = utcnow()
    with session(c.state.ctx.engine) as s:
        group = CrashGroup(project_id=c.project.id, signature=signature, component=component, first_seen=now,
                           last_seen=now, crash_count=1, tester_count=1)
        s.add(group)
        s.flush()
        assert group.id is not None
        s.add(Crash(crash_id=str(uuid.uuid4()), project_id=c.project.id, received_at=now, updated_at=now,
                    submitted_via="minidump", build="1.0 | beta", status="processed", group_id=group.id,
                    tester_id="t1", annotations_key=f"annotations/{uuid.uuid4()}"))
        s.commit()
        return group.id


def test_cell_escapes_pipes() -> None:
    assert cell(HANG) == "hang \\| nar::wait"
    assert cell(None) == "" and cell("a\nb") == "a b"


def test_pipes_in_user_data_keep_tables_whole(crashd: Crashd) -> None:
    opened = utcnow() - 30 * H
    add_group_with_crash(crashd, "stackoverflow | deep::recursion", component="render | gpu")
    add_ticket(crashd, HANG, opened=opened)
    fixed = add_ticket(crashd, "null | deref", opened=opened, state="resolved", fixed_in="1.1 | rc")
    add_event(crashd, fixed, "resolved", opened + 2 * H)
    add_ticket(crashd, "secret | leak", opened=opened, restricted=True)

    report = build_report(crashd.state.ctx, since=utcnow() - 48 * H, last_report=None)
    text = render_report(report)
    assert "hang \\| nar::wait" in text and "`stackoverflow \\| deep::recursion`" in text
    assert table_rows_whole(text) >= 4
    board = triage_board(crashd.state.ctx, project_id=crashd.project.id, now=utcnow())
    assert board["report_markdown"] == render_report(
        build_report(crashd.state.ctx, since=board["now"] - timedelta(hours=24), last_report=None,
                     project_id=crashd.project.id, now=board["now"]))
    assert table_rows_whole(board["report_markdown"]) >= 3

    log = render_progress_log(progress_log(crashd.state.ctx, include_restricted=True))
    assert "## Security" in log and "## Turnaround" in log and "secret \\| leak" in log
    assert "`hang \\| nar::wait`" in log
    assert table_rows_whole(log) >= 6


def test_regressed_p0_on_board_and_in_report(crashd: Crashd) -> None:
    opened = utcnow() - 30 * H
    back = add_ticket(crashd, "game: back_again", opened=opened, state="regressed", due=48)
    still = add_ticket(crashd, "game: still_open", opened=opened, due=40)
    board = triage_board(crashd.state.ctx, project_id=crashd.project.id, now=utcnow())
    report = build_report(crashd.state.ctx, since=utcnow() - 24 * H, last_report=None)
    assert [t["ticket_id"] for t in board["open_tickets"]] == [t["id"] for t in report["open_tickets"]] == [still, back]
    assert [t["id"] for t in report["regressions"]] == [t["ticket_id"] for t in board["regressions"]] == [back]
    text = render_report(report)
    open_section = text[text.index("## Open P0/P1 (2)"):text.index("## Regressions")]
    assert f"| #{back} | P0 regressed | game: back_again |" in open_section
    assert f"| #{back} | P0 regressed |" in board["report_markdown"].split("## Regressions")[0]


def test_counts_are_plural_only_when_not_one(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [plural(n, "crash") for n in (0, 1, 2)] == ["0 crashes", "1 crash", "2 crashes"]
    assert (plural(1, "tester"), plural(2, "report"), noun(1, "build")) == ("1 tester", "2 reports", "build")
    assert templates.env.from_string('{{ 1|plural("crash") }}, {{ 2|plural("tester") }}').render() == "1 crash, 2 testers"
    group = add_group_with_crash(crashd, "game: once")
    page = signed_in(crashd, "ana", "admin", monkeypatch).get(f"/groups/{group}?project=game")
    assert page.status_code == 200, page.text
    assert "<b>1</b> crash</span>" in page.text and "<b>1</b> tester</span>" in page.text
    assert "1 crashes" not in page.text and "1 testers" not in page.text


def test_newly_spreading_lists_groups_of_two_or_more_testers_first(crashd: Crashd,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    single = add_group_with_crash(crashd, "game: one_tester")
    spread = add_group_with_crash(crashd, "game: two_testers")
    with session(crashd.state.ctx.engine) as s:
        group = s.get(CrashGroup, spread)
        assert group is not None
        group.tester_count, group.crash_count = 2, 3
        s.add(group)
        s.commit()
    board = triage_board(crashd.state.ctx, project_id=crashd.project.id, now=utcnow())
    assert [(g["group_id"], g["spreading"]) for g in board["spreading"]] == [(spread, True), (single, False)]
    page = signed_in(crashd, "sam", "viewer", monkeypatch).get("/triage").text
    section = page[page.index('id="spreading"'):page.index('id="regressions"')]
    assert '<span class="count">1</span>' in section and "1 tester so far" in section
    assert section.index("two_testers") < section.index("1 tester so far") < section.index("one_tester")
    assert "2 or more testers first" in section
