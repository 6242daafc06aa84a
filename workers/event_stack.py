"""A Sentry event (no minidump) as a processed report, so that signature, component and
grouping rules treat it like a walked minidump: an event dict (and a SymbolProvider) in, a
report in the rust-minidump ``minidump-stackwalk --json`` shape the rules read out.

Frames come from the event's own stack trace (the primary exception's, else the crashing
thread's), crashing frame first (Sentry lists the oldest call first). The SDK unwound them
itself (a Python traceback, a native SDK's unwinder), so none is a stack-scan guess: the
top frame's trust is ``context`` and every caller's ``cfi``, and they may decide signature and
component. A native frame (an ``instruction_addr`` inside one of ``debug_meta.images``) gets
that image as its module and is symbolicated from the symbol store like a minidump frame; the
image's symbols are then reported loaded, missing or corrupt, so a crash whose symbols were
missing is reprocessed when they arrive. An event without frames (``capture_message``) gets
``signature_hint``: its message, the signature a SignatureRule would otherwise leave EMPTY.
Every event with a message or an exception value gets ``event_text`` (both, one per line),
where the component rules look for a GGML_ASSERT or Rust panic line as they do in logs.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from schemas.sentry_event import event_frames, event_message, primary_exception
from schemas.stack import FrameTrust, Module
from symbolicator.limits import DEFAULT_LIMITS, Limits
from symbolicator.symbolize import demangle
from symbolicator.symbols.types import SymbolStatus

NO_STACK = "EMPTY: event without a stack trace or message"
EVENT_TEXT_MAX = 64 * 1024  # characters of message and exception value kept for component hints
# Sentry's debug id: a UUID and an optional age ("3249d99d-0c40-4931-8610-f4e4fb0b6936-1a"). Its
# Breakpad form is the 32 hex digits upper case and the age in hex ("...6936" + "1A").
DEBUG_ID = re.compile(r"([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})"
                      r"(?:-?([0-9a-f]{1,8}))?", re.IGNORECASE)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    """An address: an int or a hex string (``"0x7f3a12c0"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value, 16) if isinstance(value, str) else None
    except ValueError:
        return None


def breakpad_id(debug_id: Any) -> str | None:
    """Sentry's debug id in the Breakpad form the symbol store uses; None when it is not one."""
    match = DEBUG_ID.fullmatch(debug_id.strip()) if isinstance(debug_id, str) else None
    if match is None:
        return None
    return "".join(match.groups()[:5]).upper() + format(int(match.group(6) or "0", 16), "X")


def _images(event: dict[str, Any]) -> list[Any]:
    meta = event.get("debug_meta")
    images = meta.get("images") if isinstance(meta, dict) else None
    return images if isinstance(images, list) else []


def event_modules(event: dict[str, Any], limit: int = DEFAULT_LIMITS.modules) -> list[Module]:
    """The images of ``debug_meta`` that have an address, a size and a code file (the first
    limit of them), sorted by address."""
    out = []
    for image in _images(event)[:limit]:
        if not isinstance(image, dict):
            continue
        start, size, code = _int(image.get("image_addr")), _int(image.get("image_size")), _text(image.get("code_file"))
        if start is not None and size and code:
            # Breakpad names a debug file by its base name: libgame.so, C:\\build\\game.pdb -> game.pdb
            debug_file = Module(0, 0, _text(image.get("debug_file")) or code).filename
            out.append(Module(start, size, code, _text(image.get("code_id")), debug_file,
                              breakpad_id(image.get("debug_id"))))
    return sorted(out, key=lambda m: m.base_addr)


def _module_at(modules: list[Module], address: int | None) -> Module | None:
    """The module holding address (modules sorted by base address): a binary search, so an
    event listing thousands of images and frames costs frames x log(images), not the product."""
    if address is None:
        return None
    index = bisect.bisect_right(modules, address, key=lambda m: m.base_addr)
    return modules[index - 1] if index and modules[index - 1].contains(address) else None


def _frame(number: int, frame: dict[str, Any], modules: list[Module], symbols: Any) -> dict[str, Any]:
    """A Sentry frame in the report's shape, symbolicated when it is native and symbols
    are there. Without a function it signs as ``libgame.so@0x1a2b``, like a minidump frame."""
    package = _text(frame.get("package"))
    address = _int(frame.get("instruction_addr"))
    module = _module_at(modules, address)
    out: dict[str, Any] = {
        "frame": number, "trust": FrameTrust.event.value,  # the SDK's stack trace, not a walk
        "module": module.filename if module else _text(frame.get("module")) or (
            Module(0, 0, package).filename if package else None),
        "module_offset": hex(address - module.base_addr) if module and address is not None else None,
        "offset": hex(address) if address is not None else None, "function": _text(frame.get("function")),
        "file": _text(frame.get("abs_path")) or _text(frame.get("filename")),
        "line": frame.get("lineno") if isinstance(frame.get("lineno"), int) else None,
        "in_app": frame.get("in_app"), "missing_symbols": False, "inlines": [],
    }
    if module is not None and address is not None and symbols is not None and not out["function"]:
        # Callers' addresses are return addresses: look up the call instruction before them.
        _symbolize(out, module, address - (1 if number else 0), symbols)
    return out


def _symbolize(out: dict[str, Any], module: Module, address: int, symbols: Any) -> None:
    if not module.debug_id or symbols.status(module) is not SymbolStatus.loaded:
        out["missing_symbols"] = True
        return
    locations = symbols.symbolize(module, address - module.base_addr)
    if locations:
        outer = locations[-1]
        out.update(function=outer.function and demangle(outer.function), file=outer.file, line=outer.line)
        out["inlines"] = [{"function": loc.function and demangle(loc.function), "file": loc.file, "line": loc.line}
                          for loc in locations[:-1]]


def _module_entries(frames: list[dict[str, Any]], modules: list[Module], symbols: Any) -> list[dict[str, Any]]:
    """The report's ``modules``: the images frames fell in, with what became of their symbols."""
    used = {f["module"] for f in frames if f.get("module_offset")}
    entries = []
    for module in modules:
        if module.filename not in used:
            continue
        status = symbols.status(module) if symbols is not None and module.debug_id else SymbolStatus.missing
        entries.append({
            "filename": module.filename, "code_file": module.code_file, "debug_file": module.debug_file,
            "debug_id": module.debug_id, "base_addr": hex(module.base_addr), "end_addr": hex(module.end_addr),
            "loaded_symbols": status is SymbolStatus.loaded,
            "missing_symbols": status in (SymbolStatus.missing, SymbolStatus.unavailable),
            "corrupt_symbols": status is SymbolStatus.corrupt,
        })
    return entries


def _object(value: Any) -> dict[str, Any]:
    """value when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _system(event: dict[str, Any]) -> dict[str, Any]:
    contexts = _object(event.get("contexts"))
    os_ctx, device = _object(contexts.get("os")), _object(contexts.get("device"))
    return {"os": _text(os_ctx.get("name")) or _text(event.get("platform")), "os_ver": _text(os_ctx.get("version")),
            "cpu_arch": _text(device.get("arch")), "cpu_info": None, "cpu_count": None}


def crash_type(event: dict[str, Any]) -> str:
    """What the crash is: the exception's type (and value), else the event level and message."""
    exception = primary_exception(event)
    if exception and _text(exception.get("type")):
        value = _text(exception.get("value"))
        return f"{exception['type']}: {value}"[:500] if value else str(exception["type"])
    return f"{event.get('level') or 'error'}: message"


def event_report(event: dict[str, Any], symbols: Any = None, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The processed report of an event without a minidump; symbols is a SymbolProvider
    (None: native frames stay as addresses). Images past ``limits.modules`` and frames past
    ``limits.frames_per_thread`` (the crashing frame's end is kept) are left out and counted
    in ``cut``, as a minidump's lists are (symbolicator/limits.py)."""
    modules = event_modules(event, limits.modules)
    listed = event_frames(event)
    frames = [_frame(i, f, modules, symbols) for i, f in enumerate(listed[:limits.frames_per_thread])]
    thread = {"threads_index": 0, "thread_id": None, "thread_name": None, "frame_count": len(frames),
              "frames": frames}
    report: dict[str, Any] = {
        "status": "OK", "source": "sentry_event",
        "crash_info": {"type": crash_type(event), "address": None, "crashing_thread": 0, "assertion": None},
        "system_info": _system(event), "crashing_thread": thread, "threads": [thread], "thread_count": 1,
        "modules": _module_entries(frames, modules, symbols), "unloaded_modules": [],
    }
    text = "\n".join(t for t in (event_message(event), _exception_text(event)) if t)
    if text:  # read by triage.components for a GGML_ASSERT or Rust panic line
        report["event_text"] = text[:EVENT_TEXT_MAX]
    cut = {name: {"listed": total, "read": kept} for name, total, kept in
           (("frames", len(listed), len(frames)), ("modules", len(_images(event)), min(len(_images(event)), limits.modules)))
           if total > kept}
    if cut:
        report["cut"] = cut
    if not frames:
        report["signature_hint"] = (event_message(event) or _message_of_exception(event) or NO_STACK)[:255]
    return report


def _exception_text(event: dict[str, Any]) -> str | None:
    exception = primary_exception(event)
    return _text(exception.get("value")) if exception else None


def _message_of_exception(event: dict[str, Any]) -> str | None:
    exception = primary_exception(event)
    return crash_type(event) if exception and _text(exception.get("type")) else None
