"""Scrubbing of secrets and personal data before anything is stored (docs/privacy.md).

Relay's model, made smaller: a rule either names **keys** (a value stored under a matching
key is replaced whole by ``[Filtered]``) or holds a **pattern** (each match in any text is
replaced; a named group ``secret`` narrows the replacement to that group, so that
``Bearer abc`` becomes ``Bearer [Filtered]``). The rules are data: ``scrub_rules.toml`` next
to this module (``CRASHD_SCRUB_RULES`` points elsewhere), with per-project sections.

Key selectors look at a value's *path* (``sentry.user.email``, ``extra.auth.token``): each
component is split into lower-case words at ``_``, ``-``, spaces and camelCase humps
(``zkLoginInputs`` -> ``zk``, ``login``, ``inputs``; ``APIKey`` -> ``api``, ``key``).
``key_words`` match one whole word of any component (``key`` matches ``api_key`` and
``publicKey``, never ``keyboard_layout`` or ``monkey``); ``key_names`` are globs over a whole
component, its words joined by ``_`` (``ephemeral_*``); ``paths`` are globs over the whole
path, components joined by ``.``. A value under a matching component is filtered with
everything below it. ``skip_*`` selectors (same syntax) exempt keys from a rule.

A leaf: pure functions over strings and JSON-like values; the only I/O is load_rules.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

FILTERED = "[Filtered]"
WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
RULE_FIELDS = {"description", "pattern", "key_words", "key_names", "paths", "skip_words", "skip_names",
               "skip_paths"}
PROJECT_FIELDS = {"disable", "rules"}
KEY_RULE_ANSWERS = 4096


class ScrubRulesError(ValueError):
    """The rules file is missing, not TOML, or holds a bad rule (the message says where)."""


def key_words(component: str) -> tuple[str, ...]:
    """The lower-case words of one key (``userSalt`` -> ``("user", "salt")``)."""
    return tuple(w.lower() for w in WORDS.findall(component))


@dataclass(frozen=True)
class Selector:
    """Which keys a rule (or its exemption) applies to; see the module docstring."""

    words: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.names or self.paths)

    def match(self, path: tuple[str, ...]) -> str | None:
        """The selector entry that matches path (``key_words=token``), else None."""
        normal = ["_".join(key_words(c)) for c in path]
        for component in path:
            hit = self.words.intersection(key_words(component))
            if hit:
                return f"key_words={sorted(hit)[0]}"
        for glob in self.names:
            if any(fnmatchcase(name, glob) for name in normal):
                return f"key_names={glob}"
        joined = ".".join(normal)
        return next((f"paths={glob}" for glob in self.paths if fnmatchcase(joined, glob)), None)


@dataclass(frozen=True)
class Rule:
    """One rule: keys to filter whole, or a pattern to filter in text (or both)."""

    name: str
    keys: Selector = Selector()
    pattern: re.Pattern[str] | None = None
    skip: Selector = Selector()

    def replace(self, text: str) -> str:
        """text with this rule's matches (their ``secret`` group, if any) as FILTERED."""
        if self.pattern is None:
            return text
        return self.pattern.sub(self._replacement, text)

    def spans(self, text: str, pos: int) -> Iterable[tuple[int, int, int, int]]:
        """(match start, match end, filtered start, filtered end) of each match from pos."""
        assert self.pattern is not None
        for match in self.pattern.finditer(text, pos):
            group = "secret" if "secret" in self.pattern.groupindex and match.group("secret") else 0
            yield match.start(), match.end(), match.start(group), match.end(group)

    @staticmethod
    def _replacement(match: re.Match[str]) -> str:
        if "secret" not in match.re.groupindex or match.group("secret") is None:
            return FILTERED
        start, end = match.span("secret")
        whole = match.group(0)
        return whole[:start - match.start()] + FILTERED + whole[end - match.start():]


Answer = TypeVar("Answer")


def _remembered(answers: dict[tuple[str, ...], Answer], path: tuple[str, ...],
                compute: Callable[[], Answer]) -> Answer:
    """answers[path], computed and kept when missing; the dict is emptied when it holds
    KEY_RULE_ANSWERS paths (they come from clients, so they are bounded here)."""
    try:
        return answers[path]
    except KeyError:
        pass
    if len(answers) >= KEY_RULE_ANSWERS:
        answers.clear()
    answer = answers[path] = compute()
    return answer


@dataclass(frozen=True)
class Rules:
    """The rules that apply to one project, in file order."""

    rules: tuple[Rule, ...] = ()
    # key_rule's and patterns_at's answers by path: the same few annotation names come with
    # every upload
    _answers: dict[tuple[str, ...], str | None] = field(default_factory=dict, compare=False, repr=False)
    _patterns: dict[tuple[str, ...], tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def patterns(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.pattern is not None)

    def patterns_at(self, path: tuple[str, ...]) -> tuple[Rule, ...]:
        """The pattern rules that apply to a value at path: those whose skip selector does not
        match it (remembered for up to KEY_RULE_ANSWERS paths)."""
        return _remembered(self._patterns, path, lambda: tuple(
            rule for rule in self.patterns if not (path and rule.skip and rule.skip.match(path))))

    def key_rule(self, path: tuple[str, ...]) -> str | None:
        """``<rule>:<selector>`` of the first key rule filtering the value at path, else None
        (remembered for up to KEY_RULE_ANSWERS paths: the names come from clients)."""
        return _remembered(self._answers, path, lambda: self._key_rule(path))

    def _key_rule(self, path: tuple[str, ...]) -> str | None:
        for rule in self.rules:
            if rule.keys and not rule.skip.match(path):
                hit = rule.keys.match(path)
                if hit:
                    return f"{rule.name}:{hit}"
        return None


@dataclass(frozen=True)
class RuleSet:
    """Every project's rules: the file's ``[rules.*]`` for all, ``[projects.<name>]`` on top."""

    default: Rules = Rules()
    projects: dict[str, Rules] = field(default_factory=dict)

    def for_project(self, name: str | None) -> Rules:
        """The rules of project name (the default rules when it has no section)."""
        return self.projects.get(name or "", self.default)


# -- scrubbing ------------------------------------------------------------------------------


def scrub_text(rules: Rules, text: str, path: tuple[str, ...] = ()) -> str:
    """text with every pattern's matches filtered (a pattern whose skip selector matches path
    is not applied). Keys play no part: use scrub_fields for named values."""
    for rule in rules.patterns_at(path):
        text = rule.replace(text)
    return text


def scrub_value(rules: Rules, value: Any, path: tuple[str, ...] = ()) -> Any:
    """A JSON-like value with secrets filtered: under a key rule's key every non-empty
    string or number becomes FILTERED (the shape stays: objects and lists keep their keys
    and lengths); elsewhere patterns apply to strings. A list of ``[name, value]`` pairs
    (Sentry's ``tags``, ``request.headers``) is read as an object. Dotted keys are split:
    ``sentry.user.email`` is the path ``sentry``, ``user``, ``email``."""
    if path and rules.key_rule(path):
        return _filter_all(value)
    if isinstance(value, str):
        return scrub_text(rules, value, path)
    if isinstance(value, Mapping):
        return scrub_fields(rules, value, path)
    if isinstance(value, list):
        return [_scrub_item(rules, item, path) for item in value]
    return value


def scrub_fields(rules: Rules, mapping: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A new mapping: each value scrubbed (scrub_value) under its key's path; keys kept."""
    return {key: scrub_value(rules, value, (*path, *str(key).split("."))) for key, value in mapping.items()}


def _scrub_item(rules: Rules, item: Any, path: tuple[str, ...]) -> Any:
    if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):  # a [name, value] pair
        return [item[0], scrub_value(rules, item[1], (*path, *item[0].split(".")))]
    return scrub_value(rules, item, path)


def _filter_all(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _filter_all(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_filter_all(v) for v in value]
    if isinstance(value, bool) or value is None or value == "":
        return value
    return FILTERED


def explain(rules: Rules, path: tuple[str, ...], text: str) -> list[str]:
    """Which rules filter text at path (``<rule>:<selector>`` or ``<rule>:pattern``): how a
    case is traced to the rule line that decides it (tests, docs/privacy.md)."""
    hit = rules.key_rule(path) if path else None
    if hit:
        return [hit]
    return [f"{r.name}:pattern" for r in rules.patterns
            if not (path and r.skip.match(path)) and r.replace(text) != text]


# -- the rules file -------------------------------------------------------------------------


def load_rules(path: Path) -> RuleSet:
    """Read and check a rules file. Raises ScrubRulesError saying what is wrong and where."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScrubRulesError(f"scrub rules {path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScrubRulesError(f"scrub rules {path}: not TOML: {exc}") from exc
    return parse_rules(document, str(path))


def parse_rules(document: Mapping[str, Any], where: str = "scrub rules") -> RuleSet:
    """A RuleSet from a parsed rules document. Raises ScrubRulesError."""
    unknown = set(document) - {"rules", "projects"}
    if unknown:
        raise ScrubRulesError(f"{where}: unknown section {sorted(unknown)[0]!r} (rules, projects)")
    default = _rules(_table(document, "rules", where), where)
    projects: dict[str, Rules] = {}
    for name, section in _table(document, "projects", where).items():
        at = f"{where}: [projects.{name}]"
        if not isinstance(section, dict) or set(section) - PROJECT_FIELDS:
            raise ScrubRulesError(f"{at}: only 'disable' (rule names) and [projects.{name}.rules.*]")
        disable = section.get("disable", [])
        known = {r.name for r in default.rules}
        if not isinstance(disable, list) or any(d not in known for d in disable):
            raise ScrubRulesError(f"{at}: disable must list rules of [rules] ({', '.join(sorted(known))})")
        own = _rules(_table(section, "rules", at), at)
        projects[name] = Rules(tuple(r for r in default.rules if r.name not in disable) + own.rules)
    return RuleSet(default, projects)


def _table(parent: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = parent.get(name, {})
    if not isinstance(value, dict):
        raise ScrubRulesError(f"{where}: {name} must be a table")
    return value


def _rules(table: Mapping[str, Any], where: str) -> Rules:
    return Rules(tuple(_rule(name, spec, f"{where}: [rules.{name}]") for name, spec in table.items()))


def _rule(name: str, spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise ScrubRulesError(f"{where}: a rule is a table")
    unknown = set(spec) - RULE_FIELDS
    if unknown:
        raise ScrubRulesError(f"{where}: unknown field {sorted(unknown)[0]!r} ({', '.join(sorted(RULE_FIELDS))})")
    keys = _selector(spec, "key_words", "key_names", "paths", where)
    pattern = None
    if "pattern" in spec:
        if not isinstance(spec["pattern"], str) or not spec["pattern"]:
            raise ScrubRulesError(f"{where}: pattern must be a regular expression")
        try:
            pattern = re.compile(spec["pattern"])
        except re.error as exc:
            raise ScrubRulesError(f"{where}: bad pattern: {exc}") from exc
    if not keys and pattern is None:
        raise ScrubRulesError(f"{where}: a rule needs a pattern or key_words/key_names/paths")
    return Rule(name, keys, pattern, _selector(spec, "skip_words", "skip_names", "skip_paths", where))


def _selector(spec: Mapping[str, Any], words: str, names: str, paths: str, where: str) -> Selector:
    lists = {}
    for entry in (words, names, paths):
        value = spec.get(entry, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ScrubRulesError(f"{where}: {entry} must be a list of non-empty strings")
        lists[entry] = value
    bad = [w for w in lists[words] if key_words(w) != (w,)]
    if bad:
        raise ScrubRulesError(f"{where}: {words} entry {bad[0]!r} is not one lower-case word (use {names})")
    return Selector(frozenset(lists[words]), tuple(n.lower() for n in lists[names]),
                    tuple(p.lower() for p in lists[paths]))
