"""The processed crash as JSON, field for field rust-minidump's ``minidump-stackwalk --json``,
so tools written for it read ours: crash_info, system_info, crashing_thread, threads, modules.
"""

from __future__ import annotations

from typing import Any

from schemas.stack import Frame, Module, Thread
from symbolicator.minidump import Minidump
from symbolicator.symbols.types import SymbolProvider, SymbolStatus


def hex_addr(value: int | None, width: int) -> str | None:
    """rust-minidump's zero-padded hex: 0x%016x on 64-bit CPUs, 0x%08x on 32-bit ones."""
    if value is None:
        return None
    return f"0x{value:0{width * 2}x}"


def frame_json(index: int, frame: Frame, width: int, with_registers: bool) -> dict[str, Any]:
    module = frame.module
    address = frame.lookup_address
    out: dict[str, Any] = {
        "frame": index,
        "trust": frame.trust.value,
        "offset": hex_addr(address, width),
        "module": module.filename if module else None,
        "module_offset": hex_addr(address - module.base_addr, width) if module else None,
        "function": frame.function,
        "function_offset": hex_addr(frame.function_offset, width),
        "file": frame.file,
        "line": frame.line,
        "inlines": [{"function": i.function, "file": i.file, "line": i.line} for i in frame.inlines] or None,
        "missing_symbols": frame.missing_symbols,
    }
    if with_registers:
        out["registers"] = {name: hex_addr(value, width) for name, value in sorted(frame.registers.items())}
    return out


def thread_json(thread: Thread, width: int) -> dict[str, Any]:
    return {
        "thread_id": thread.thread_id,
        "thread_name": thread.name,
        "frame_count": len(thread.frames),
        "frames": [frame_json(i, f, width, with_registers=i == 0) for i, f in enumerate(thread.frames)],
        "notes": thread.notes,
    }


def module_json(module: Module, width: int, status: SymbolStatus | None) -> dict[str, Any]:
    return {
        "filename": module.filename,
        "code_file": module.code_file,
        "code_id": module.code_id,
        "debug_file": module.debug_file,
        "debug_id": module.debug_id,
        "version": module.version,
        "base_addr": hex_addr(module.base_addr, width),
        "end_addr": hex_addr(module.end_addr, width),
        "loaded_symbols": status is SymbolStatus.loaded,
        "missing_symbols": status in (SymbolStatus.missing, SymbolStatus.unavailable),
        "corrupt_symbols": status is SymbolStatus.corrupt,
    }


def build_report(dump: Minidump, threads: list[Thread], provider: SymbolProvider,
                 notes: list[str]) -> dict[str, Any]:
    """The JSON document of one processed dump."""
    width = 4 if dump.system.cpu_arch in ("x86", "arm") else 8
    used = {id(f.module) for t in threads for f in t.frames if f.module is not None}
    exception = dump.exception
    crashing = dump.crashing_thread
    thread_docs = [thread_json(t, width) for t in threads]
    crashing_doc = None
    if crashing is not None and crashing < len(thread_docs):
        crashing_doc = {"threads_index": crashing, **thread_docs[crashing]}
    return {
        "status": "OK",
        "system_info": {
            "os": dump.system.os, "os_ver": dump.system.os_ver, "cpu_arch": dump.system.cpu_arch,
            "cpu_info": dump.system.cpu_info, "cpu_count": dump.system.cpu_count,
            "cpu_microcode_version": dump.system.cpu_microcode_version,
        },
        "crash_info": {
            "type": exception.reason if exception else None,
            "address": hex_addr(exception.address, width) if exception else None,
            "crashing_thread": crashing,
            "assertion": dump.assertion,
        },
        "crashing_thread": crashing_doc,
        "thread_count": len(threads),
        "threads": thread_docs,
        "modules": [
            module_json(m, width, provider.status(m) if id(m) in used else None) for m in dump.modules
        ],
        "pid": dump.pid,
        "annotations": dump.annotations,
        "lsb_release": dump.linux.get("lsb_release"),
        "notes": notes + dump.notes,
        # lists longer than symbolicator/limits.py allows (not in rust-minidump's JSON):
        # {"threads": {"listed": 200000, "read": 1024}}; the notes say it in words
        "cut": {what: {"listed": listed, "read": read} for what, (listed, read) in dump.cut.items()},
    }
