"""Breakpad text symbol files (``.sym``): a streaming reader for what symbolic does not give us.

symbolic (Sentry's Rust library) builds our SymCache and CFI text, but its Python API hands
out neither ``STACK WIN`` records nor FUNC/PUBLIC parameter sizes, and it rejects the old
5-field ``INLINE`` records that Breakpad still accepts. This module reads the text line by
line (never the whole file in memory) and keeps only what the caches need:

``MODULE os arch debug_id debug_file`` and ``INFO CODE_ID code_id [code_file]``: identity.
``FUNC [m] address size parameter_size name`` and ``PUBLIC [m] address parameter_size name``:
    for ``function_at`` (all numbers hex).
``STACK CFI INIT address size rules`` and ``STACK CFI address rules``: CFI rows.
``STACK WIN type rva code_size prolog epilog params saved_regs locals max_stack has_program
    program_string|allocates_base_pointer``: x86 frame data (type 4) and FPO (type 0).
``INLINE_ORIGIN`` / ``INLINE``: only to detect and rewrite the old format (normalize_inlines).
Line records (``address size line file_id``) are skipped: symbolic reads them.

Old vs new inline records (Breakpad ``SymbolParseHelper::ParseInline[Origin]``):
    old ``INLINE_ORIGIN id file_id name``      new ``INLINE_ORIGIN id name``
    old ``INLINE nest call_line origin_id (addr size)+``          (odd token count)
    new ``INLINE nest call_line call_file_id origin_id (addr size)+`` (even token count)
In the old format the file an origin names is where the inlined function is *defined*; there
is no call-site file. Breakpad then shows, for every frame, the file of the line record at the
address. We rewrite to the new format with the call-site file being the file the caller's code
is in: for nest 0 the file of the FUNC's line record at its start address (its first line
record when none covers it), for nest N the file of the parent inline's origin (where the
parent's body, and so the call, lives). For ``linux_inline.old.sym`` (only ``FILE 0
linux_inline.cpp``) every frame gets ``linux_inline.cpp``, as in Breakpad's output; the
a.cpp/b.cpp/c.cpp answer needs the new-format file (the corpus's ``symbols-alt/``).
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from symbolicator.symbols.types import WinFrameInfo

STACK_WIN_FPO = 0
STACK_WIN_FRAME_DATA = 4
_OLD_ORIGIN_FILE = re.compile(rb"-?\d+$")


@dataclass(frozen=True)
class ModuleRecord:
    """The ``MODULE`` line: ``MODULE Linux x86_64 BBA6FA10B8AAB33D00000000000000000 linux_inline``."""

    os: str
    arch: str
    debug_id: str
    debug_file: str


class StringTable:
    """Strings by id (function names, CFI rule sets, program strings), kept as the index stores
    them: one UTF-8 blob, string i at ``blob[offsets[i]:offsets[i + 1]]``.

    Rule sets and program strings repeat, so add() interns them; function names are nearly all
    distinct, so append() only appends: a dict and a str object per name took ~2x the memory of
    every other record together (a 401 MiB .sym: about 200 MB more at upload, docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.blob = array("B")
        self.offsets = array("Q", [0])

    def add(self, text: str) -> int:
        """The id of text, adding it on first sight."""
        found = self.ids.get(text)
        if found is None:
            found = self.ids[text] = self.append(text)
        return found

    def append(self, text: str) -> int:
        """The id of a new copy of text (not interned)."""
        self.blob.frombytes(text.encode("utf-8", "surrogatepass"))
        self.offsets.append(len(self.blob))
        return len(self.offsets) - 2

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8", "surrogatepass")

    @property
    def strings(self) -> list[str]:
        """Every string, by id (a new list: for tests and tools, not for large files)."""
        return [self[i] for i in range(len(self))]


@dataclass
class SymScan:
    """What one pass over a symbol text kept, in compact arrays (file order)."""

    module: ModuleRecord | None = None
    code_id: str | None = None
    code_file: str | None = None
    strings: StringTable = field(default_factory=StringTable)
    func_start: array = field(default_factory=lambda: array("Q"))
    func_size: array = field(default_factory=lambda: array("Q"))
    func_param: array = field(default_factory=lambda: array("I"))
    func_name: array = field(default_factory=lambda: array("I"))
    public_addr: array = field(default_factory=lambda: array("Q"))
    public_param: array = field(default_factory=lambda: array("I"))
    public_name: array = field(default_factory=lambda: array("I"))
    cfi_start: array = field(default_factory=lambda: array("Q"))
    cfi_size: array = field(default_factory=lambda: array("Q"))
    cfi_rules: array = field(default_factory=lambda: array("I"))  # string ids
    delta_addr: array = field(default_factory=lambda: array("Q"))
    delta_rules: array = field(default_factory=lambda: array("I"))
    win: list[WinFrameInfo] = field(default_factory=list)
    old_origin_files: dict[int, int] = field(default_factory=dict)  # old INLINE_ORIGIN id -> file
    old_inlines: int = 0  # old-format INLINE / INLINE_ORIGIN records seen
    bad_records: int = 0
    first_error: str | None = None

    def _bad(self, line_number: int, line: bytes) -> None:
        self.bad_records += 1
        if self.first_error is None:
            self.first_error = f"line {line_number}: {line[:80].decode('utf-8', 'replace')}"


def read_module_record(first_line: bytes) -> ModuleRecord | None:
    """The MODULE record of a .sym's first line (where an uploaded file belongs: its
    ``<debug_file>/<DEBUG_ID>/`` folder); None when the line is not one."""
    scan = SymScan()
    try:
        _record(scan, first_line.split(b"\n", 1)[0].rstrip(b"\r"))
    except (ValueError, IndexError):
        return None
    return scan.module


def scan_sym(lines: Iterable[bytes], scan: SymScan | None = None) -> SymScan:
    """Read symbol text lines (bytes, as from a file opened ``rb``) into a SymScan.

    Bad records are counted and skipped, as Breakpad does; nothing is raised for them.
    Also reads symbolic's CFI cache text, which holds only STACK lines.
    """
    scan = scan or SymScan()
    for number, raw in enumerate(lines, 1):
        first = raw[:1]
        if not first or first < b"A" or first > b"Z":
            continue  # a line record ("15b30 15 41 0"), or blank
        line = raw.rstrip(b"\r\n")
        try:
            ok = _record(scan, line)
        except (ValueError, IndexError, OverflowError):  # OverflowError: a number past 32/64 bits
            ok = False
        if not ok:
            scan._bad(number, line)
    return scan


def _record(scan: SymScan, line: bytes) -> bool:
    """Handle one non-line record; False when it is malformed."""
    if line.startswith(b"STACK CFI INIT "):
        addr, size, rules = line[15:].split(None, 2)
        scan.cfi_start.append(int(addr, 16))
        scan.cfi_size.append(int(size, 16))
        scan.cfi_rules.append(scan.strings.add(_rules_text(rules)))
    elif line.startswith(b"STACK CFI "):
        addr, rules = line[10:].split(None, 1)
        scan.delta_addr.append(int(addr, 16))
        scan.delta_rules.append(scan.strings.add(_rules_text(rules)))
    elif line.startswith(b"STACK WIN "):
        info = parse_stack_win(line[10:].decode("utf-8", "replace"))
        if info is None:
            return False
        scan.win.append(info)
    elif line.startswith(b"FUNC "):
        fields = line[5:].split(None, 4 if line.startswith(b"FUNC m ") else 3)
        if fields[0] == b"m":
            fields = fields[1:]
        scan.func_start.append(int(fields[0], 16))
        scan.func_size.append(int(fields[1], 16))
        scan.func_param.append(int(fields[2], 16))
        scan.func_name.append(scan.strings.append(_name(fields, 3)))
    elif line.startswith(b"PUBLIC "):
        fields = line[7:].split(None, 3 if line.startswith(b"PUBLIC m ") else 2)
        if fields[0] == b"m":
            fields = fields[1:]
        scan.public_addr.append(int(fields[0], 16))
        scan.public_param.append(int(fields[1], 16))
        scan.public_name.append(scan.strings.append(_name(fields, 2)))
    elif line.startswith(b"INLINE_ORIGIN "):
        return _inline_origin(scan, line)
    elif line.startswith(b"INLINE "):
        count = len(line[7:].split())
        if count < 5:
            return False
        scan.old_inlines += count % 2  # odd: old format (no call-site file id)
    elif line.startswith(b"MODULE "):
        os_, arch, debug_id, debug_file = line[7:].decode("utf-8", "replace").split(None, 3)
        scan.module = ModuleRecord(os_, arch, debug_id.upper(), debug_file.strip())
    elif line.startswith(b"INFO CODE_ID "):
        words = line[13:].decode("utf-8", "replace").split(None, 1)
        scan.code_id = words[0]
        scan.code_file = words[1].strip() if len(words) > 1 else None
    # FILE, other INFO records and unknown records are symbolic's business or ignored.
    return True


def _name(fields: list[bytes], index: int) -> str:
    """The name field: the rest of the line (names hold spaces); empty when absent."""
    return fields[index].decode("utf-8", "replace").strip() if len(fields) > index else ""


def _rules_text(rules: bytes) -> str:
    text = rules.decode("utf-8", "replace").strip()
    if ":" not in text:
        raise ValueError("CFI rules without a register")
    return text


def _inline_origin(scan: SymScan, line: bytes) -> bool:
    """``INLINE_ORIGIN id name`` or the old ``INLINE_ORIGIN id file_id name``.

    Breakpad's test: old when the word after the id is a (possibly -1) number and a name
    follows it.
    """
    fields = line[14:].split(None, 2)
    if len(fields) < 2:
        return False
    origin = int(fields[0])
    if len(fields) == 3 and _OLD_ORIGIN_FILE.match(fields[1]):
        scan.old_origin_files[origin] = int(fields[1])
        scan.old_inlines += 1
    return True


def parse_stack_win(text: str) -> WinFrameInfo | None:
    """A ``STACK WIN`` record's fields after ``STACK WIN ``; None when malformed.

    All numbers are hex. The 11th field is the program string (which holds spaces) when
    has_program_string is 1, else the allocates_base_pointer flag. Example:
    ``4 41b0 86 13 0 8 0 e0 0 1 $T0 $ebp = $eip $T0 4 + ^ = ...``.
    """
    fields = text.split(None, 10)
    if len(fields) != 11:
        return None
    try:
        numbers = [int(f, 16) for f in fields[:10]]
    except ValueError:
        return None
    if max(numbers) > 0xFFFFFFFF:  # x86 PE: every field is 32-bit
        return None
    kind, rva, code_size, prolog, epilog, params, saved, local, max_stack, has_program = numbers
    last = fields[10].strip()
    if has_program:
        program: str | None = last
        allocates_bp = False
    else:
        program = None
        try:
            allocates_bp = int(last, 16) != 0
        except ValueError:
            return None
    return WinFrameInfo(type=kind, rva=rva, code_size=code_size, prolog_size=prolog, epilog_size=epilog,
                        parameter_size=params, saved_register_size=saved, local_size=local,
                        max_stack_size=max_stack, program_string=program, allocates_base_pointer=allocates_bp)


def parse_cfi_rules(text: str, into: dict[str, str]) -> None:
    """Apply a CFI rule set (``.cfa: $rsp 8 + .ra: .cfa -8 + ^``) to into, in place.

    A token ending in ``:`` names a register (key kept as written, without the colon); the
    tokens up to the next register form its postfix expression.
    """
    register: str | None = None
    expression: list[str] = []
    for token in text.split():
        if token.endswith(":"):
            if register is not None and expression:
                into[register] = " ".join(expression)
            register, expression = token[:-1], []
        else:
            expression.append(token)
    if register is not None and expression:
        into[register] = " ".join(expression)


# -- old INLINE records -> new ----------------------------------------------------------------


def normalize_inlines(lines: Iterable[bytes], out: BinaryIO, origin_files: dict[int, int]) -> int:
    """Copy symbol text to out with old-format inline records rewritten to the new format.

    origin_files maps old INLINE_ORIGIN ids to their file ids (SymScan.old_origin_files).
    Each FUNC block (FUNC, its INLINE and line records) is buffered, as the nest-0 call-site
    file comes from the function's line records, which follow its INLINE records. Returns
    the number of records rewritten.
    """
    rewritten = 0
    block: list[bytes] = []
    for raw in lines:
        first = raw[:1]
        in_block = bool(block) and (raw.startswith(b"INLINE ") or not (b"A" <= first <= b"Z"))
        if in_block:
            block.append(raw)
            continue
        if block:
            rewritten += _flush_block(block, out, origin_files)
            block = []
        if raw.startswith(b"FUNC "):
            block.append(raw)
        elif raw.startswith(b"INLINE_ORIGIN "):
            fields = raw[14:].split(None, 2)
            if len(fields) == 3 and _OLD_ORIGIN_FILE.match(fields[1]):
                raw = b"INLINE_ORIGIN " + fields[0] + b" " + fields[2].rstrip(b"\r\n") + b"\n"
                rewritten += 1
            out.write(raw)
        else:
            out.write(raw)
    if block:
        rewritten += _flush_block(block, out, origin_files)
    return rewritten


def _flush_block(block: list[bytes], out: BinaryIO, origin_files: dict[int, int]) -> int:
    """Write one FUNC block, rewriting its old INLINE records; returns how many."""
    function_file = _function_file(block)
    parents: dict[int, int] = {}  # nest level -> origin id of the latest INLINE at that level
    rewritten = 0
    for raw in block:
        if not raw.startswith(b"INLINE "):
            out.write(raw)
            continue
        fields = raw[7:].split()
        try:
            nest, origin = int(fields[0]), int(fields[3 if len(fields) % 2 == 0 else 2])
        except (ValueError, IndexError):
            out.write(raw)  # malformed: left for symbolic to refuse
            continue
        if len(fields) % 2 == 0:  # already new
            parents[nest] = origin
            out.write(raw)
            continue
        call_line = fields[1]
        call_file = origin_files.get(parents[nest - 1], -1) if nest > 0 and nest - 1 in parents else -1
        if call_file < 0:
            call_file = function_file if function_file is not None else max(origin_files.get(origin, 0), 0)
        parents[nest] = origin
        ranges = b" ".join(fields[3:])
        out.write(b"INLINE %d %s %d %d %s\n" % (nest, call_line, call_file, origin, ranges))
        rewritten += 1
    return rewritten


def _function_file(block: list[bytes]) -> int | None:
    """The file id of the FUNC's line at its start address, else of its first line."""
    fields = block[0][5:].split()
    start = int(fields[1] if fields[0] == b"m" else fields[0], 16)
    first: int | None = None
    for raw in block[1:]:
        if raw.startswith(b"INLINE "):
            continue
        parts = raw.split()
        if len(parts) != 4:
            continue
        try:
            addr, size, file_id = int(parts[0], 16), int(parts[1], 16), int(parts[3])
        except ValueError:
            continue
        if first is None:
            first = file_id
        if addr <= start < addr + size:
            return file_id
    return first
