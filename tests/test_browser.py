"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright for
Python; `make test` installs the package when missing) against crashd served by uvicorn
on PostgreSQL + RQ. Data goes in through the real upload pipeline (tests/dashboard_world.seed).

Flows: sign in, filter the groups page, open a group and a crash, resolve a ticket, mark one
a duplicate, compare two builds; an annotation holding <script> shows as text and never runs. A full-page
screenshot of every page lands in tests/artifacts/<page>.png (ignored by git) for review.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import playwright.sync_api as playwright_api  # the dev extra: a missing browser driver fails, never skips
import pytest

from conftest import Crashd, LiveServer
from dashboard_world import BETA1, BETA2, PASSWORD, XSS, World, add_ticket, create_user, seed

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
TREND_SHOTS = Path(tempfile.gettempdir()) / "crashd-trends"  # the trend charts' screenshots, for review
RC1 = "1.0.0-rc1"  # after both betas in version order; no sessions yet
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

# One backend is enough here: the views are the same code on both (test_dashboard_pages runs both).
pytestmark = pytest.mark.parametrize("backend", ["postgres-rq"], indirect=True)


@pytest.fixture(scope="module")
def browser() -> Iterator["playwright_api.Browser"]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs the Debian packages chromium chromium-driver")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def world(crashd: Crashd, live: LiveServer) -> World:
    return seed(crashd)


@pytest.fixture
def page(browser: "playwright_api.Browser", live: LiveServer) -> Iterator["playwright_api.Page"]:
    """A fresh browser context (no cookies) that fails the test on any script or console error
    (a Content-Security-Policy refusal is one) and on any request leaving the live server (the
    pages must work without external network)."""
    context = browser.new_context(base_url=live.url, viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not refused_page(msg.text)
            else None)  # CSP refusals too
    page.on("request", lambda req: None if req.url.startswith(live.url) else outside.append(req.url))
    yield page
    context.close()
    assert not errors, f"script errors: {errors}"
    assert not outside, f"requests to other hosts: {outside}"


def refused_page(text: str) -> bool:
    """Chromium's console line for a page answered 400 (a refused query shown with its reason):
    no script error."""
    return "status of 400" in text


def shot(page: "playwright_api.Page", name: str) -> None:
    """A full-page screenshot to tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: "playwright_api.Page", crashd: Crashd, monkeypatch: pytest.MonkeyPatch, name: str,
            role: str, path: str = "/") -> None:
    """Create the user with the CLI's function, open path, get sent to /login, sign in."""
    create_user(crashd, name, role, monkeypatch)
    page.goto(path)
    assert "/login?next=" in page.url
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def test_sign_in_filter_open_a_group_and_a_crash(crashd: Crashd, world: World, page, monkeypatch) -> None:
    page.goto("/login?next=/")
    shot(page, "login")
    sign_in(page, crashd, monkeypatch, "vera", "viewer")
    assert page.url.endswith("/") and page.locator("nav .who").inner_text().startswith("vera")
    rows = page.locator("table.groups tbody tr")
    assert rows.count() == len(world.groups)
    assert page.locator("svg.spark").count() == len(world.groups)
    shot(page, "groups")

    page.select_option("select[name=component]", "llama_cpp")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/?*component=llama_cpp*")
    assert [t.strip() for t in page.locator("td.sig > a").all_inner_texts()] == ["llama_eval_graph"]
    page.click("a.reset")
    page.click("th a:has-text('Crashes')")  # sort by crashes, most first
    page.wait_for_url("**sort=crash_count**")
    page.click("td.sig > a:text-is('World::tick')")

    assert page.locator("h1").inner_text() == "World::tick"
    scanned = page.locator("table.frames tr.guessed").first
    assert scanned.locator(".trust").inner_text() == "scan"
    assert scanned.evaluate("row => getComputedStyle(row.querySelector('td')).fontStyle") == "italic"
    assert page.locator("table.frames tr.inlined .fn").first.inner_text().strip() == "Vec::at"
    assert page.locator("form.action").count() == 0  # a viewer gets no ticket buttons
    assert page.locator("table.builds-chart .bar").count() >= 2
    shot(page, "group")

    page.click(f"a:text-is('{world.crashes['tick0']}')")
    assert page.locator("details.thread.crashing").get_attribute("open") is not None
    assert page.locator("details.thread").count() == 2
    assert page.locator("details.thread:not(.crashing)").get_attribute("open") is None
    marked = page.locator(".logview tr.marked td.tx")
    assert marked.count() == 1 and "panicked at" in marked.inner_text() and XSS in marked.inner_text()
    assert page.locator("td.annotation", has_text=XSS).inner_text() == XSS  # shown as text
    assert page.evaluate("typeof window.__xss") == "undefined"  # and never run
    assert page.locator("text=Reprocess").count() == 0
    shot(page, "crash")


def test_admin_resolves_a_ticket_with_fixed_in(crashd: Crashd, world: World, page, monkeypatch) -> None:
    group_id = world.groups["World::tick"]
    sign_in(page, crashd, monkeypatch, "ada", "admin", f"/groups/{group_id}")
    assert page.url.endswith(f"/groups/{group_id}")
    page.fill("form.action-resolve input[name=fixed_in]", RC1)
    page.click("form.action-resolve button")
    page.wait_for_url(f"**/groups/{group_id}#ticket")
    assert page.locator("#ticket .state-resolved").count() >= 1
    assert page.locator("ol.history li").last.inner_text().startswith("resolved by user:ada")
    assert "Fixed in " + RC1 in page.locator("#ticket").inner_text()
    shot(page, "group-resolved")
    ticket = crashd.client.get(f"/api/tickets/{world.ticket_id}", headers=crashd.admin).json()
    assert (ticket["state"], ticket["fixed_in"]) == ("resolved", RC1)  # no sessions of RC1: no verdict yet

    page.goto("/triage")
    assert "World::tick" in page.locator("#awaiting").inner_text()
    page.click("#copy-report")
    page.wait_for_function("() => document.getElementById('copy-status').textContent.length > 0")
    assert page.locator("#copy-status").inner_text() == "Copied."
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("#report-markdown").input_value()
    shot(page, "triage-awaiting-verification")


def test_admin_marks_a_ticket_duplicate_of_another(crashd: Crashd, world: World, page, monkeypatch) -> None:
    group_id = world.groups["World::tick"]
    other = add_ticket(crashd, next(g for s, g in world.groups.items() if s != "World::tick"), "parser crash")
    sign_in(page, crashd, monkeypatch, "ada", "admin", f"/groups/{group_id}")
    page.select_option("form.action-duplicate select[name=of]", str(other))
    shot(page, "group-duplicate-picker")
    page.click("form.action-duplicate button")
    page.wait_for_url(f"**/groups/{group_id}#ticket")
    assert page.locator("ol.history li").last.inner_text().startswith("duplicate by user:ada")
    assert page.locator("form.action-reopen button").is_visible()
    ticket = crashd.client.get(f"/api/tickets/{world.ticket_id}", headers=crashd.admin).json()
    assert (ticket["state"], ticket["history"][-1]["details"]["duplicate_of"]) == ("duplicate", other)


def test_triage_board_counts_down_and_reddens_overdue_tickets(crashd: Crashd, world: World, page,
                                                              monkeypatch) -> None:
    sign_in(page, crashd, monkeypatch, "tess", "viewer", "/triage")
    countdown = page.locator("table.tickets .countdown").first
    assert countdown.inner_text().endswith(" left")
    assert countdown.evaluate("el => getComputedStyle(el).color") != "rgb(198, 40, 40)"
    shot(page, "triage")
    # The same ticket when its due time has passed: the script turns it red within a second.
    countdown.evaluate("el => el.setAttribute('data-due', new Date(Date.now() - 7200e3).toISOString())")
    page.wait_for_function("() => document.querySelector('table.tickets .countdown').textContent.startsWith('overdue')")
    assert countdown.evaluate("el => getComputedStyle(el).color") == "rgb(198, 40, 40)"


def test_compare_two_builds_and_the_symbols_page(crashd: Crashd, world: World, page, monkeypatch) -> None:
    sign_in(page, crashd, monkeypatch, "quinn", "viewer", "/builds")
    page.select_option("select[name=base]", BETA1)
    page.select_option("select[name=target]", BETA2)
    page.click("#compare button[type=submit]")
    page.wait_for_url("**/builds?*target=*")
    rows = page.locator("table.compare tbody tr")
    assert rows.count() == len(world.groups)
    tick = rows.filter(has_text="World::tick")
    assert "4 → 1" in tick.inner_text() and "-90 %" in tick.inner_text()
    assert tick.locator(".bar.base").count() == 1 and tick.locator(".bar.target").count() == 1
    shot(page, "builds")

    page.click("nav a:text-is('Symbols')")
    missing = page.locator("table.missing tbody tr")
    assert missing.count() == 1 and "libengine.so" in missing.inner_text()
    assert "game" in page.locator("#uploaded").inner_text()
    shot(page, "symbols")


def played_days_ago(crashd: Crashd, build: str, days: range, per_day: int) -> None:
    """per_day sessions of build (half an hour each) started on each of those days ago, at this time."""
    now = datetime.now(timezone.utc)
    body = [{"session_id": f"{build}-d{d}-{i}", "build": build, "started": (now - timedelta(days=d)).isoformat(),
             "duration": 1800, "status": "exited"} for d in days for i in range(per_day)]
    response = crashd.client.post(f"/api/{crashd.project.id}/sessions/?sentry_key={crashd.key}", json=body)
    assert response.status_code == 200, response.text


def test_trend_charts_and_the_fix_build(crashd: Crashd, world: World, page, monkeypatch) -> None:
    """The group page's chart and per-build table, where the fix build RC1 shows as 0 crashes in
    300 sessions; the builds page's chart. Screenshots go to TREND_SHOTS."""
    played_days_ago(crashd, RC1, range(0, 1), 300)  # since World::tick's crashes: the fix build
    played_days_ago(crashd, BETA1, range(1, 8), 20)
    played_days_ago(crashd, BETA2, range(1, 4), 40)
    TREND_SHOTS.mkdir(exist_ok=True)
    group_id = world.groups["World::tick"]
    sign_in(page, crashd, monkeypatch, "quinn", "viewer", f"/groups/{group_id}")
    chart = page.locator("#trends svg.trend-chart")
    assert chart.count() == 1 and chart.locator("circle").count() >= 3
    assert (chart.bounding_box() or {"width": 0})["width"] > 600
    assert [t.strip() for t in page.locator("#trends ul.trend-legend .mono").all_inner_texts()] == [BETA1, BETA2, RC1]
    fix = page.locator("#per-build tr.no-crash")
    assert fix.count() == 1 and RC1 in fix.inner_text() and "0 in 300 sessions" in fix.inner_text()
    widths = page.locator("#per-build .bar.rate").evaluate_all("bars => bars.map(b => b.style.width)")
    # 4 crashes in 240 sessions, 1 in 370, 0 in 300, on the fixed log axis (0.1 %, 1 %, 10 %, 100 %)
    assert widths == ["40.7%", "14.4%", "0%"]
    page.locator("#trends").screenshot(path=str(TREND_SHOTS / "group-trends.png"))
    page.locator("#per-build").screenshot(path=str(TREND_SHOTS / "group-per-build.png"))
    page.screenshot(path=str(TREND_SHOTS / "group.png"), full_page=True)

    page.goto("/builds?project=game")
    chart = page.locator("#trends svg.trend-chart")
    assert chart.count() == 1 and "crashes in" in page.locator("#trends ul.trend-legend").inner_text()
    page.locator("#trends").screenshot(path=str(TREND_SHOTS / "builds-trends.png"))
    page.screenshot(path=str(TREND_SHOTS / "builds.png"), full_page=True)


def test_group_top_values_link_to_a_search(crashd: Crashd, world: World, page, monkeypatch) -> None:
    """The group page's Top values (CRASHD_FACET_FIELDS): bars, then a click on a build's bar
    opens the search page with the group's crashes of that build. Screenshot: TREND_SHOTS."""
    TREND_SHOTS.mkdir(exist_ok=True)
    group_id = world.groups["World::tick"]
    sign_in(page, crashd, monkeypatch, "fay", "viewer", f"/groups/{group_id}")
    facets = page.locator("#facets")
    assert facets.locator(".facet").count() == 5
    build = facets.locator('.facet[data-field="build"] a.facet-row').first
    chosen = build.locator(".facet-value").inner_text()
    facets.screenshot(path=str(TREND_SHOTS / "group-top-values.png"))
    build.click()
    page.wait_for_load_state()
    assert page.url.split("?", 1)[0].endswith("/search")
    cells = page.locator("table.results tbody tr td:nth-child(3)").all_inner_texts()
    assert cells and {c.strip() for c in cells} == {chosen}
    page.screenshot(path=str(TREND_SHOTS / "group-top-values-search.png"), full_page=True)
