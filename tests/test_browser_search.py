"""The search page in headless Chromium (as tests/test_browser.py: Debian's /usr/bin/chromium
through Playwright, crashd served by uvicorn on PostgreSQL + RQ, data through the real upload
pipeline): build a condition with the query builder, see the results and facet bars, click a
bar, follow an annotation's "all with this value" from a crash page, and a refused query.
Full-page screenshots land in /tmp/shots-search/ for review.
"""

from __future__ import annotations

from pathlib import Path

import playwright.sync_api as playwright_api  # the dev extra: a missing browser driver fails, never skips
import pytest
from test_browser import browser, page  # noqa: F401 - the dashboard browser tests' Chromium and page
from test_search_page import ODD, seed_crashes

from conftest import Crashd, LiveServer
from dashboard_world import PASSWORD, create_user

SHOTS = Path("/tmp/shots-search")

pytestmark = pytest.mark.parametrize("backend", ["postgres-rq"], indirect=True)


@pytest.fixture
def crashes(crashd: Crashd, live: LiveServer) -> dict[str, str]:
    return seed_crashes(crashd)


def shot(page: "playwright_api.Page", name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: "playwright_api.Page", crashd: Crashd, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    create_user(crashd, "sol", "viewer", monkeypatch)
    page.goto(path)
    assert "/login?next=" in page.url
    page.fill("#username", "sol")
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def results(page: "playwright_api.Page") -> list[str]:
    """The crash ids of the results table (from each link's title)."""
    return [a.get_attribute("title") or "" for a in page.locator("table.results td.crash-id a").all()]


def test_build_a_query_click_a_facet_and_follow_an_annotation(crashd: Crashd, crashes: dict[str, str], page,
                                                             monkeypatch) -> None:
    sign_in(page, crashd, monkeypatch, "/search")
    assert page.url.endswith("/search") and page.locator("nav a.on").inner_text() == "Search"
    assert sorted(results(page)) == sorted(crashes.values())
    assert page.locator(".facet").count() == 5  # CRASHD_FACET_FIELDS
    shot(page, "search-all")

    # the builder: field, operator, value in the first empty row
    page.fill("input[name=f0]", "annotations.gpu")
    page.select_option("select[name=o0]", "prefix")
    page.fill("input[name=v0]", "RTX")
    page.select_option("select[name=project]", "game")
    page.click("#search button[type=submit]")
    page.wait_for_url("**/search?*f0=annotations.gpu*")
    assert sorted(results(page)) == sorted([crashes["a"], crashes["b"]])
    assert page.locator("p.summary").inner_text().startswith("1–2 of 2 crashes")
    assert page.locator("input[name=f0]").input_value() == "annotations.gpu"
    assert page.locator("select[name=o0]").input_value() == "prefix"
    assert page.locator("input[name=f1]").input_value() == "" and page.locator("input[name=f2]").count() == 1
    gpu = page.locator(".facet[data-field='annotations.gpu']")
    assert gpu.locator("a.facet-row").count() == 2
    fill = gpu.locator("a.facet-row", has_text="RTX 3060").locator(".facet-fill")
    assert fill.get_attribute("style") == "width: 50.0%"  # 1 of the 2 crashes matched
    width = fill.evaluate("el => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width")
    assert 0.45 < width < 0.55
    shot(page, "search-builder")

    # a facet bar adds its value to the query
    gpu.locator("a.facet-row", has_text="RTX 3060").click()
    page.wait_for_url("**annotations.gpu=%3DRTX%203060*")
    assert results(page) == [crashes["a"]]
    assert page.locator("input[name=f0]").input_value() == "annotations.gpu"  # in place of ^RTX
    assert page.locator("select[name=o0]").input_value() == "eq"
    assert page.locator("input[name=v0]").input_value() == "RTX 3060" and page.locator("input[name=v1]").input_value() == ""
    shot(page, "search-facet-clicked")

    # a crash page: its annotation's "all with this value" is the search for it
    page.goto(f"/crashes/{crashes['d']}")
    row = page.locator("table.kvtable tr", has=page.locator("th", has_text="gpu"))
    assert row.locator("td.annotation").inner_text() == ODD  # shown as text
    shot(page, "crash-annotation-links")
    row.locator("a.search-link").click()
    page.wait_for_url("**/search?**")
    assert results(page) == [crashes["d"]]
    assert page.locator("input[name=v0]").input_value() == ODD and page.locator("select[name=o0]").input_value() == "eq"
    shot(page, "search-from-crash-page")
    page.goto(f"/crashes/{crashes['c']}")
    page.locator("dl.kv a.search-link", has_text="1.5.0").click()
    page.wait_for_url("**build=%3D1.5.0*")
    assert sorted(results(page)) == sorted([crashes["c"], crashes["d"]])


def test_a_refused_query_shows_why_and_keeps_the_form(crashd: Crashd, crashes: dict[str, str], page,
                                                      monkeypatch) -> None:
    sign_in(page, crashd, monkeypatch, "/search?project=game")
    page.fill("input[name=f0]", "gpu")
    page.fill("input[name=v0]", "RTX")
    page.click("#search button[type=submit]")
    page.wait_for_url("**f0=gpu*")
    assert "unknown search field 'gpu'" in page.locator(".search-error").inner_text()
    assert page.locator("input[name=f0]").input_value() == "gpu"
    shot(page, "search-refused")
    page.fill("input[name=f0]", "annotations.gpu")
    page.select_option("select[name=o0]", "prefix")
    page.click("#search button[type=submit]")
    page.wait_for_url("**f0=annotations.gpu*")
    assert page.locator(".search-error").count() == 0 and len(results(page)) == 2
    page.fill(".facet-pick input[name=facet]", "annotations.nar_model")
    page.click(".facet-pick button[type=submit]")
    page.wait_for_url("**facet=annotations.nar_model*")
    assert page.locator(".facet").first.get_attribute("data-field") == "annotations.nar_model"
    assert page.locator(".facet").first.locator(".facet-missing").count() == 1
    shot(page, "search-facet-picked")
