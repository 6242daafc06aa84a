"""Threshold rules: parsing the TOML (with clear errors), evaluating a group's numbers, and
crashd serve / crashd worker refusing to start with a bad rules file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.settings import Settings
from triage.thresholds import (
    DEFAULT_RULES_PATH,
    GroupStats,
    RulesError,
    WindowStats,
    current_rules,
    evaluate,
    hang_windows,
    load_rules,
    parse_rules,
    parse_window,
    strongest,
    windows,
)

from conftest import REPO

DAY = timedelta(hours=24)


def rule(**fields: object) -> str:
    """One [[rule]] table: defaults overridden by fields (None leaves a field out). JSON
    spells strings, numbers, booleans and lists of strings the way TOML does."""
    base: dict[str, object] = {"name": "r", "window": "24h", "min_testers": 3, "priority": "P1", **fields}
    return "[[rule]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in base.items() if v is not None)


def stats(testers: int, *, window: timedelta = DAY, share: float | None = None, component: str | None = "game",
          builds: tuple[str, ...] = ("1.0",)) -> GroupStats:
    return GroupStats(component, {window: WindowStats(testers, testers * 2, builds, share, "1.0" if share else None)})


def test_default_rules_file() -> None:
    rules = load_rules(DEFAULT_RULES_PATH)
    assert [(r.name, r.window, r.min_testers, r.priority, r.min_share, r.components) for r in rules] == [
        ("widespread", DAY, 5, "P0", None, None), ("spreading", DAY, 3, "P1", None, None),
        ("nar-output", DAY, 2, "P1", None, None), ("long-hangs", DAY, 2, "P1", None, None)]
    assert [(r.kinds, r.categories, r.min_hang_seconds) for r in rules[2:]] == [
        (("feedback",), ("nar_output",), None), (("hang",), None, 30.0)]
    assert Settings().rules_file == DEFAULT_RULES_PATH


def test_optional_fields_and_windows() -> None:
    rules = parse_rules(rule(name="gpu", window="1h", min_share=0.25, components=["gpu", "llama_cpp"], priority="P0")
                        + rule(name="week", window="7d", min_testers=10) + rule(name="m", window="30m", min_share=1))
    gpu, week, minutes = rules
    assert (gpu.window, gpu.min_share, gpu.components, gpu.window_text) == (timedelta(hours=1), 0.25, ("gpu", "llama_cpp"), "1h")
    assert week.window == timedelta(days=7) and minutes.min_share == 1.0 and minutes.window == timedelta(minutes=30)
    assert windows(rules) == {timedelta(hours=1): True, timedelta(days=7): False, timedelta(minutes=30): True}
    assert parse_window("2w") == timedelta(weeks=2)
    assert parse_rules("") == []


@pytest.mark.parametrize("text, message", [
    (rule(window="2x"), "rule #1 ('r'): field 'window': expected a duration like 1h, 24h or 7d, not '2x'"),
    (rule(window="0h"), "field 'window'"),
    (rule(window=None), "rule #1 ('r'): field 'window': required"),
    (rule(name=None), "rule #1: field 'name': required"),
    (rule(name="Bad Name"), "field 'name': must be lower-case"),
    (rule(min_testers=0), "field 'min_testers': must be a whole number >= 1, not 0"),
    (rule(min_testers=2.5), "field 'min_testers'"),
    (rule(min_testers=True), "field 'min_testers'"),
    (rule(priority="P2"), "field 'priority': must be one of P0, P1, not 'P2'"),
    (rule(min_share=1.5), "field 'min_share': must be a number from 0 to 1, not 1.5"),
    (rule(min_share="half"), "field 'min_share'"),
    (rule(components="gpu"), "field 'components': must be a non-empty list"),
    (rule(components=[]), "field 'components'"),
    (rule(min_tester=3), "field 'min_tester': unknown field"),
    (rule(categories=["gossip"]), "field 'categories': must be a non-empty list of bug, nar_output,"),
    (rule(categories=[]), "field 'categories'"),
    (rule(categories=["ui"], kinds=["crash"]), 'field \'categories\': applies to feedback: kinds must be ["feedback"]'),
    (rule(min_hang_seconds=-1), "field 'min_hang_seconds': must be a number of seconds >= 0, not -1"),
    (rule(min_hang_seconds="30s"), "field 'min_hang_seconds'"),
    (rule(min_hang_seconds=30, kinds=["crash", "hang"]), "field 'min_hang_seconds': applies to hangs"),
    (rule() + rule(), "rule #2 ('r'): field 'name': used twice"),
    ("[[rules]]\nname = 'x'\n", "unknown table or key 'rules'"),
    ("rule = 3\n", "'rule' must be [[rule]] tables"),
    ("[[rule]\nname=", "not valid TOML"),
])
def test_errors_name_file_rule_and_field(text: str, message: str) -> None:
    with pytest.raises(RulesError) as error:
        parse_rules(text, source="/etc/crashd/rules.toml")
    assert str(error.value).startswith("rules file /etc/crashd/rules.toml: ")
    assert message in str(error.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# \xe9\n")
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path / "latin1.toml")


def test_current_rules_reads_the_file_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rule(name="a"))
    assert [r.name for r in current_rules(path)] == ["a"]
    assert current_rules(path) is current_rules(path)
    path.write_text(rule(name="bb"))
    os.utime(path, ns=(1, 10**18))
    assert [r.name for r in current_rules(path)] == ["bb"]


def test_evaluate_defaults() -> None:
    rules = load_rules(DEFAULT_RULES_PATH)
    assert evaluate(rules, stats(2)) == []
    assert [f.rule.name for f in evaluate(rules, stats(3))] == ["spreading"]
    assert [f.rule.name for f in evaluate(rules, stats(4))] == ["spreading"]
    five = evaluate(rules, stats(5, builds=("1.0", "1.1")))
    assert [f.rule.name for f in five] == ["widespread", "spreading"]
    assert strongest(five).rule.name == "widespread"
    assert five[0].stats.testers == 5 and five[0].stats.crashes == 10
    assert five[0].reason == "rule widespread (P0): 5 testers (>= 5) in 24h, 10 crashes, builds 1.0, 1.1"
    assert evaluate(rules, GroupStats("game", {})) == []  # no crash in the window


def test_strongest_prefers_p0_then_file_order() -> None:
    rules = parse_rules(rule(name="a", min_testers=1) + rule(name="b", min_testers=1, priority="P0")
                        + rule(name="c", min_testers=1, priority="P0"))
    assert strongest(evaluate(rules, stats(1))).rule.name == "b"
    assert strongest([]) is None


def test_min_share_needs_a_known_share() -> None:
    [share_rule] = parse_rules(rule(name="share", min_testers=2, min_share=0.5))
    assert evaluate([share_rule], stats(2, share=None)) == []  # no sessions: unknown, never fires
    assert evaluate([share_rule], stats(2, share=0.4)) == []
    [firing] = evaluate([share_rule], stats(2, share=0.5))
    assert "50% of the testers active on 1.0 (>= 50%)" in firing.reason
    assert evaluate([share_rule], stats(1, share=1.0)) == []  # min_testers still counts


def test_components_and_windows_are_per_rule() -> None:
    rules = parse_rules(rule(name="gpu", components=["gpu"], min_testers=1, priority="P0")
                        + rule(name="hour", window="1h", min_testers=2))
    assert evaluate(rules, stats(5, component="game")) == []  # 24h numbers, but no 1h numbers
    assert [f.rule.name for f in evaluate(rules, stats(1, component="gpu"))] == ["gpu"]
    assert [f.rule.name for f in evaluate(rules, stats(2, window=timedelta(hours=1)))] == ["hour"]
    assert evaluate(rules, stats(1, component=None)) == []


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker", "--burst"]])
def test_bad_rules_file_refuses_to_start(tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(rule(name="hot", priority="urgent"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env.update(CRASHD_DATA_DIR=str(tmp_path / "data"), CRASHD_RULES_FILE=str(bad),
               CRASHD_REDIS_URL="redis://127.0.0.1:6379/15")
    done = subprocess.run([sys.executable, "-m", "server.cli", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: rules file {bad}: rule #1 ('hot'): field 'priority': "
                                   "must be one of P0, P1, not 'urgent'")
    assert "Traceback" not in done.stdout + done.stderr


def test_feedback_rules_look_at_feedback_groups_of_their_categories() -> None:
    [nar] = parse_rules(rule(name="nar", min_testers=2, categories=["nar_output"]))
    assert nar.kinds == ("feedback",)
    reports = {DAY: WindowStats(2, 3, ("1.0",))}
    assert [f.reason for f in evaluate([nar], GroupStats("nar_output", reports, "feedback"))] == [
        "rule nar (P1): 2 testers (>= 2) in 24h, 3 reports, builds 1.0, category nar_output, kinds feedback"]
    assert evaluate([nar], GroupStats("ui", reports, "feedback")) == []  # another category
    assert evaluate([nar], GroupStats("nar_output", reports, "crash")) == []  # a crash group never
    [default] = parse_rules(rule())
    assert evaluate([default], GroupStats("nar_output", reports, "feedback")) == []  # crash rules never on feedback


def test_hang_rules_count_only_long_hangs() -> None:
    [long] = parse_rules(rule(name="long", min_testers=2, min_hang_seconds=30))
    assert long.kinds == ("hang",) and hang_windows([long]) == {(DAY, 30.0)}
    every_hang = {DAY: WindowStats(9, 20, ("1.0",))}
    short = GroupStats("nar", every_hang, "hang", {(DAY, 30.0): WindowStats(1, 1, ("1.0",))})
    assert evaluate([long], short) == []  # 9 testers hung, but only 1 for 30 s or more
    stuck = GroupStats("nar", every_hang, "hang", {(DAY, 30.0): WindowStats(2, 3, ("1.0",))})
    assert [f.reason for f in evaluate([long], stuck)] == [
        "rule long (P1): 2 testers (>= 2) in 24h, 3 hangs of 30 s or more, builds 1.0, kinds hang"]
    assert evaluate([long], GroupStats("nar", every_hang, "crash", stuck.long_hangs)) == []
