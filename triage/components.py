"""Which component owns a crash: ordered rules over the crashing thread's top trusted frames,
with hints from log attachments (llama.cpp's GGML_ASSERT, Rust panics). Pure: a processed
report (rust-minidump ``minidump-stackwalk --json`` shape) in, ``ComponentResult`` out.

The rules are data, ``triage/components.toml``; its header and docs/components.md say how
they are applied and edited.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

DEFAULT_RULES_PATH = Path(__file__).with_name("components.toml")
TRUSTED = frozenset({"context", "cfi", "frame_pointer", "event"})  # scan, cfi_scan: guesses; event: an SDK's trace
MAX_POSITIONS = 256  # frames and inlined calls read at most, skipped ones included
MAX_FRAMES = 100  # largest `frames` a rule may ask for
LOG_TAIL = 1 << 20  # characters read from the end of each log
MAX_MARKERS = 1000  # marker hits parsed per log before giving up (bounded work)
LINE_MAX = 4096  # characters of a log line looked at either side of a marker
REASON_MAX = 500
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_RULE_KEYS = {"component", "modules", "functions", "files", "frames", "fallback"}
_SETTINGS_KEYS = {"frames", "default", "ggml_assert"}


@dataclass(frozen=True)
class Glob:
    """One case-insensitive fnmatch pattern (`*` also crosses `/`)."""

    pattern: str
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, pattern: str) -> "Glob":
        return cls(pattern, re.compile(fnmatch.translate(pattern), re.IGNORECASE))


@dataclass(frozen=True)
class Position:
    """A frame of the crashing thread, or one call inlined into it (`inline` 0 = innermost)."""

    frame: int
    inline: int | None
    module: str | None
    function: str | None
    file: str | None
    trust: str

    def label(self) -> str:
        where = f"frame {self.frame}" + (f" (inlined call {self.inline})" if self.inline is not None else "")
        return f"{where} [{self.trust}] {self.module or '?'}!{self.function or '?'}"


@dataclass(frozen=True)
class Rule:
    """One [[rule]] table; `index` is its 1-based place in the file."""

    index: int
    component: str
    modules: tuple[Glob, ...]
    functions: tuple[Glob, ...]
    files: tuple[Glob, ...]
    frames: int
    fallback: bool

    def match(self, pos: Position) -> str | None:
        """What made this rule match the position ("module 'x' ~ 'glob'"), or None."""
        fields = (("module", _basename(pos.module), self.modules),
                  ("function", pos.function, self.functions),
                  ("file", _slashes(pos.file), self.files))
        for name, value, globs in fields:
            if value:
                glob = next((g for g in globs if g.regex.match(value)), None)
                if glob is not None:
                    return f"{name} {value!r} ~ {glob.pattern!r}"
        return None

    def matches_file(self, path: str) -> bool:
        return any(g.regex.match(path) for g in self.files)


@dataclass(frozen=True)
class ComponentRules:
    """The parsed components.toml."""

    rules: tuple[Rule, ...]
    frames: int = 10
    default: str = "game"
    ggml_assert: str = "llama_cpp"
    source: str = "<memory>"

    @property
    def owners(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if not r.fallback)


@dataclass
class ComponentResult:
    """The component of a crash, the reason text from a log hint, and how they were found."""

    component: str
    reason_text: str | None = None
    notes: list[str] = field(default_factory=list)


# -- loading the rules ----------------------------------------------------------------------


def load_rules(path: Path | None = None) -> ComponentRules:
    """Read and check a components TOML (default: the packaged components.toml).

    Raises ValueError naming the file and the problem (bad TOML, unknown key, wrong type,
    rule without patterns); OSError when the file cannot be read."""
    path = path or DEFAULT_RULES_PATH
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return parse_rules(data, str(path))


@functools.lru_cache(maxsize=1)
def default_rules() -> ComponentRules:
    """The packaged rules, read once."""
    return load_rules()


def parse_rules(data: dict[str, Any], source: str = "<memory>") -> ComponentRules:
    """Check the TOML document's shape and compile its globs; ValueError on any problem."""
    def fail(problem: str) -> ValueError:
        return ValueError(f"{source}: {problem}")

    if unknown := set(data) - {"settings", "rule"}:
        raise fail(f"unknown top-level key(s) {sorted(unknown)}; expected [settings] and [[rule]]")
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or (unknown := set(settings) - _SETTINGS_KEYS):
        raise fail(f"[settings]: unknown key(s) {sorted(unknown) if isinstance(settings, dict) else settings!r}")
    frames = _positive(settings.get("frames", 10), "[settings] frames", fail)
    default = _name(settings.get("default", "game"), "[settings] default", fail)
    ggml = _name(settings.get("ggml_assert", "llama_cpp"), "[settings] ggml_assert", fail)
    tables = data.get("rule")
    if not isinstance(tables, list) or not tables:
        raise fail("no [[rule]] tables")
    rules = tuple(_parse_rule(i, t, frames, fail) for i, t in enumerate(tables, 1))
    return ComponentRules(rules, frames, default, ggml, source)


def _parse_rule(index: int, table: Any, frames: int, fail: Callable[[str], ValueError]) -> Rule:
    where = f"rule {index}"
    if not isinstance(table, dict):
        raise fail(f"{where}: must be a table")
    if "component" in table and isinstance(table["component"], str):
        where += f" ({table['component']})"
    if unknown := set(table) - _RULE_KEYS:
        raise fail(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    if "component" not in table:
        raise fail(f"{where}: missing 'component'")
    component = _name(table["component"], f"{where} component", fail)
    globs = {key: _globs(table.get(key, []), f"{where} {key}", fail) for key in ("modules", "functions", "files")}
    if not any(globs.values()):
        raise fail(f"{where}: needs at least one of modules, functions, files")
    fallback = table.get("fallback", False)
    if not isinstance(fallback, bool):
        raise fail(f"{where} fallback: must be true or false, not {fallback!r}")
    if fallback and "frames" in table:
        raise fail(f"{where}: 'frames' has no meaning on a fallback rule (its frames are skipped, not counted)")
    depth = _positive(table.get("frames", frames), f"{where} frames", fail)
    return Rule(index, component, globs["modules"], globs["functions"], globs["files"], depth, fallback)


def _globs(value: Any, where: str, fail: Callable[[str], ValueError]) -> tuple[Glob, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise fail(f"{where}: must be a list of non-empty strings, not {value!r}")
    return tuple(Glob.compile(v) for v in value)


def _positive(value: Any, where: str, fail: Callable[[str], ValueError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FRAMES:
        raise fail(f"{where}: must be a whole number from 1 to {MAX_FRAMES}, not {value!r}")
    return value


def _name(value: Any, where: str, fail: Callable[[str], ValueError]) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise fail(f"{where}: must be a lower-case name like 'nar_ffi', not {value!r}")
    return value


def _basename(module: str | None) -> str | None:
    return re.split(r"[\\/]", module)[-1] if module else None


def _slashes(path: str | None) -> str | None:
    return path.replace("\\", "/") if path else None


# -- the stack ------------------------------------------------------------------------------


def classify(report: dict[str, Any], logs: Iterable[str | bytes] = (),
             rules: ComponentRules | None = None) -> ComponentResult:
    """The component of one processed crash. The stack decides when an owner rule claims one
    of its top trusted frames; otherwise a log hint may (GGML_ASSERT, a Rust panic in a
    rule's `files`), and failing that a fallback rule (`system`) or the default (`game`).
    A Sentry event's message and exception (the report's ``event_text``) are read for hints
    before the logs. The first hint's line is the reason text whatever decided. Never raises
    on odd reports."""
    rules = rules or default_rules()
    notes: list[str] = []
    component, decided = _from_stack(report, rules, notes)
    texts = [("event message", text)] if isinstance(text := report.get("event_text"), str) and text else []
    hint = _first_hint([*texts, *((f"log {i}", log) for i, log in enumerate(logs))], rules, notes)
    if hint is not None and hint.component:
        if not decided:
            notes.append(f"the log hint decides {hint.component} (the stack did not)")
            component = hint.component
        elif hint.component != component:
            notes.append(f"the log hint says {hint.component}; the stack's {component} is kept")
    return ComponentResult(component, hint.reason if hint else None, notes)


def _from_stack(report: dict[str, Any], rules: ComponentRules, notes: list[str]) -> tuple[str, bool]:
    """(component, whether an owner rule claimed a frame). Skipped frames (fallback rules)
    are not counted in a rule's depth; frames nobody claims are the game's."""
    thread = report.get("crashing_thread") if isinstance(report, dict) else None
    if not isinstance(thread, dict):
        notes.append(f"stack: the report has no crashing thread; {rules.default} (default)")
        return rules.default, False
    positions, stop = _positions(thread)
    fallbacks = [r for r in rules.rules if r.fallback]
    limit = max((r.frames for r in rules.owners), default=rules.frames)
    skipped: list[tuple[Position, Rule]] = []  # above the first counted frame
    unclaimed: list[Position] = []
    for pos in positions:
        depth = len(unclaimed)
        if depth >= limit:
            stop = None
            break
        for rule in rules.owners:
            if depth < rule.frames and (why := rule.match(pos)):
                _note_skipped(skipped, notes)
                notes.append(f"stack: rule {rule.index} ({rule.component}) claims {pos.label()}: {why}")
                return rule.component, True
        if fallback := next((r for r in fallbacks if r.match(pos)), None):
            skipped += [] if unclaimed else [(pos, fallback)]
            continue
        unclaimed.append(pos)
    _note_skipped(skipped, notes)
    notes += [stop] if stop else []
    if unclaimed:
        notes.append(f"stack: no rule claims the top {len(unclaimed)} counted frame(s), innermost "
                     f"{unclaimed[0].label()}; {rules.default} (default)")
        return rules.default, False
    if skipped:
        rule = skipped[0][1]
        notes.append(f"stack: every trusted frame is rule {rule.index} ({rule.component})'s; {rule.component}")
        return rule.component, False
    notes.append(f"stack: no trusted frame; {rules.default} (default)")
    return rules.default, False


def _positions(thread: dict[str, Any]) -> tuple[list[Position], str | None]:
    """The thread's frames innermost first, each frame's inlined calls (innermost first)
    before it, up to the first frame that is not trusted (scanned, or no trust at all) and
    at most MAX_POSITIONS; with a note saying where the trusted part ended, if it did."""
    out: list[Position] = []
    for index, frame in enumerate(thread.get("frames") or []):
        trust = frame.get("trust") if isinstance(frame, dict) else None
        if trust not in TRUSTED:
            return out, f"stack: stopped at frame {index} [{trust}]: frames found by scanning never decide"
        module = frame.get("module")
        calls = [(k, c) for k, c in enumerate(frame.get("inlines") or [])] + [(None, frame)]
        out += [Position(index, k, module, c.get("function"), c.get("file"), trust) for k, c in calls]
        if len(out) >= MAX_POSITIONS:
            return out[:MAX_POSITIONS], None
    return out, None


def _note_skipped(skipped: list[tuple[Position, Rule]], notes: list[str]) -> None:
    if skipped:
        names = sorted({f"{p.module or '?'}!{p.function or '?'}" for p, _ in skipped})
        notes.append(f"stack: skipped {len(skipped)} fallback frame(s): {', '.join(names[:6])}"
                     + (", ..." if len(names) > 6 else ""))


# -- log attachments ------------------------------------------------------------------------

_MARKER = re.compile(r"GGML_ASSERT|panicked at ")
_LOC_BEFORE = re.compile(r"(\S+:\d+): $")  # ggml.c:1234: GGML_ASSERT(...) failed
_GGML_NEW = re.compile(r"GGML_ASSERT\((.*)\) failed")  # ggml >= mid-2024, via ggml_abort
_GGML_OLD = re.compile(r"GGML_ASSERT: (\S+:\d+): (.*)")  # older: GGML_ASSERT: ggml.c:1234: x
_LOC = re.compile(r"(.*):(\d+):(\d+)")
_OLD_PANIC_END = re.compile(r"', (\S+:\d+:\d+)")  # Rust < 1.73: panicked at 'msg', src/x.rs:1:2
_THREAD = re.compile(r"thread '([^'\n]*)'(?: \(\d+\))? $")  # Rust >= 1.91 adds " (tid)"


@dataclass(frozen=True)
class Hint:
    """What a log line says: its reason text, the component it names (or None), where."""

    reason: str
    component: str | None
    where: str


def _first_hint(logs: Iterable[tuple[str, str | bytes]], rules: ComponentRules, notes: list[str]) -> Hint | None:
    """The first hint of the first (where, text) that has one. First, not last: later panics
    are usually consequences (PoisonError, "panic in a function that cannot unwind")."""
    for where, log in logs:
        text = _tail(log)
        for n, marker in enumerate(_MARKER.finditer(text)):
            if n >= MAX_MARKERS:
                break
            hint = _parse_marker(text, marker.start(), rules, where)
            if hint is not None:
                notes.append(f"{hint.where} -> {hint.component or 'no component'}")
                return hint
    return None


def _tail(log: str | bytes) -> str:
    """The last LOG_TAIL characters (bytes are decoded as UTF-8), from a line start."""
    cut = len(log) > LOG_TAIL
    text = log[-LOG_TAIL:]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[text.find("\n") + 1:] if cut else text


def _line_at(text: str, i: int) -> tuple[str, str, int]:
    """(text of the line before i, from i to the line end, index after the line)."""
    start = text.rfind("\n", max(0, i - LINE_MAX), i) + 1
    end = text.find("\n", i, i + LINE_MAX)
    end = end if end != -1 else min(len(text), i + LINE_MAX)
    return text[start:i], text[i:end].rstrip("\r"), end + 1


def _parse_marker(text: str, i: int, rules: ComponentRules, where: str) -> Hint | None:
    before, rest, next_line = _line_at(text, i)
    if rest.startswith("GGML_ASSERT"):
        if m := _GGML_NEW.match(rest):
            loc = _LOC_BEFORE.search(before[-300:])
            return Hint(_clip(m.group(0)), rules.ggml_assert, f"{where}: GGML_ASSERT at {loc.group(1) if loc else '?'}")
        if m := _GGML_OLD.match(rest):
            return Hint(_clip(f"GGML_ASSERT({m.group(2).strip()}) failed"), rules.ggml_assert,
                        f"{where}: GGML_ASSERT at {m.group(1)}")
        return None
    after = rest[len("panicked at "):]
    if after.startswith("'"):  # Rust < 1.73; the message may span lines
        m = _OLD_PANIC_END.search(text, i, i + LINE_MAX)
        if m is None:
            return None
        location, message = m.group(1), text[i + len("panicked at '"):m.start()]
    elif after.endswith(":") and _LOC.fullmatch(after[:-1]):  # Rust >= 1.73: message on next line
        location = after[:-1]
        message = _line_at(text, next_line)[1] if next_line <= len(text) else ""
    else:
        return None
    return _panic_hint(location, message.split("\n")[0].strip(), before, rules, where)


def _panic_hint(location: str, message: str, before: str, rules: ComponentRules, where: str) -> Hint:
    """A panic names the first owner rule whose `files` match its source path."""
    loc = _LOC.fullmatch(location)
    path = loc.group(1).replace("\\", "/") if loc else location
    rule = next((r for r in rules.owners if r.matches_file(path)), None)
    thread = _THREAD.search(before[-300:])
    reason = f"panicked at {location}: {message}" if message else f"panicked at {location}"
    return Hint(_clip(reason), rule.component if rule else None,
                f"{where}: Rust panic at {location}" + (f" in thread {thread.group(1)!r}" if thread else ""))


def _clip(text: str) -> str:
    """Whitespace collapsed, at most REASON_MAX characters."""
    text = " ".join(text.split())
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 1] + "…"
