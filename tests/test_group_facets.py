"""The group page's "Top values" (CRASHD_FACET_FIELDS among the group's crashes, issue 17):
bars on the absolute axis of the group's crash count, links to a search of the group's
crashes with that value, and a setting that names fields a facet cannot count."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient
from test_search_page import crashes, found, viewer  # noqa: F401 - fixtures

from conftest import Crashd


def _facets(page: str) -> str:
    return page.split('<section id="facets">', 1)[1].split("</section>", 1)[0]


def test_group_page_shows_top_values_with_search_links(crashd: Crashd, crashes: dict[str, str],
                                                       viewer: TestClient) -> None:
    group = crashd.crash(crashes["a"])["group_id"]
    page = viewer.get(f"/groups/{group}")
    assert page.status_code == 200
    section = _facets(page.text)
    assert "of 2 crashes in this group" in section
    fields = re.findall(r'data-field="([^"]+)"', section)
    assert fields == ["annotations.gpu", "annotations.driver_version", "os_version", "cpu", "build"]
    assert "RTX 3060" in section and "RTX 3070" in section and "Radeon" not in section  # only this group's
    assert 'style="width: 50.0%"' in section  # 1 of the group's 2 crashes: half the axis, not the whole
    link = html.unescape(re.search(r'href="([^"]*annotations.gpu=[^"]*RTX%203060[^"]*)"', section).group(1))
    assert link.startswith(f"/search?project={crashd.project.id}&group={group}&")
    assert found(viewer.get(link).text) == [crashes["a"]]


def test_facet_fields_setting(crashd: Crashd, crashes: dict[str, str], viewer: TestClient) -> None:
    crashd.settings.facet_fields = "annotations.nar_model, received, bogus field,tester_id"
    group = crashd.crash(crashes["b"])["group_id"]
    section = _facets(viewer.get(f"/groups/{group}").text)
    assert re.findall(r'data-field="([^"]+)"', section) == ["annotations.nar_model", "tester_id"]
    assert "nar-7b" in section
    crashd.settings.facet_fields = ""
    assert "No fields to show" in _facets(viewer.get(f"/groups/{group}").text)
