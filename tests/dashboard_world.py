"""Data for the dashboard's tests (test_dashboard_pages.py, test_browser.py), put in the way
production gets it: symbols through POST /api/<project>/symbols/, crashes (dumps built by
tests/minidump_writer.py, with log attachments and form fields) through the minidump endpoint
and the real processing pipeline, sessions through POST /api/<project>/sessions/; users made
with the `crashd user create` command's function.
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from symbolicator.minidump import read_minidump

from conftest import Crashd
from minidump_writer import (
    ARCH_AMD64,
    PLATFORM_LINUX,
    PLATFORM_WINDOWS,
    MinidumpWriter,
    ModuleSpec,
    ThreadSpec,
    amd64_context,
    elf_build_id,
)
from uploads import multipart

XSS = "<script>window.__xss=1</script>"
PASSWORD = "correct horse battery staple"
BETA1, BETA2 = "1.0.0-beta1", "1.0.0-beta2"
GAME_ID = bytes(range(1, 21))  # the ELF build id of the game module (its symbols are uploaded)
ENGINE_ID = bytes(range(40, 60))  # libengine.so: its symbols never are

# The game module's symbols: each function owns 0x100 bytes at its address; Game::update has
# an inlined call; only some functions have CFI, so the walk goes cfi -> frame pointer -> scan.
GAME_SYM = """MODULE Linux x86_64 ID game
FILE 0 src/game/world.cpp
FILE 1 vendor/ggml/ggml.c
FILE 2 src/game/vec.h
INLINE_ORIGIN 0 Vec::at
FUNC 1000 100 0 World::tick
1000 100 10 0
FUNC 2000 100 0 Game::update
INLINE 0 42 0 0 2000 40
2000 100 20 0
FUNC 3000 100 0 main_loop
3000 100 30 0
FUNC 4000 100 0 start_game
4000 100 40 0
FUNC 5000 100 0 llama_eval_graph
5000 100 50 1
FUNC 6000 100 0 Parser::parse<script>alert(1)</script>
6000 100 60 0
STACK CFI INIT 1000 100 .cfa: $rsp 16 + .ra: .cfa -8 + ^
STACK CFI INIT 5000 100 .cfa: $rsp 16 + .ra: .cfa -8 + ^
STACK CFI INIT 6000 100 .cfa: $rsp 16 + .ra: .cfa -8 + ^
"""
TICK, GGML, PARSER, MAIN = 0x1000, 0x5000, 0x6000, 0x3000  # where each dump's crash is
ENGINE_BASE = 0x900000


def _words(base: int, size: int, values: dict[int, int]) -> bytes:
    data = bytearray(size)
    for address, value in values.items():
        struct.pack_into("<Q", data, address - base, value)
    return bytes(data)


def game_dump(top: int, tag: int = 0, platform: int = PLATFORM_LINUX, in_engine: bool = False) -> bytes:
    """An amd64 dump crashing (SIGSEGV at 0x10) in the game function at top (or in
    libengine.so, which has no symbols), with a second thread; tag makes its bytes unique."""
    stack = _words(0x7000, 0x80, {0x7008: 0x402010, 0x7020: 0x7040, 0x7028: 0x403010, 0x7030: 0x408000,
                                  0x7040: 0, 0x7048: 0x404010})
    rip = ENGINE_BASE + 0x1234 if in_engine else 0x400000 + top + 0x10
    context = amd64_context(rip=rip, rsp=0x7000, rbp=0x7020)
    writer = MinidumpWriter(timestamp=1_700_000_000 + tag).add_system_info(arch=ARCH_AMD64, platform=platform)
    writer.add_thread_list([ThreadSpec(7, context, 0x7000, stack),
                            ThreadSpec(8, amd64_context(rip=0x403020, rsp=0x7000, rbp=0), 0x7000, stack)])
    writer.add_module_list([ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(GAME_ID)),
                            ModuleSpec(ENGINE_BASE, 0x10000, "/opt/game/libengine.so", elf_build_id(ENGINE_ID))])
    writer.add_exception(7, 0xB, address=0x10, context=context)
    return writer.build()


@dataclass
class World:
    """What seed() put in: crash ids by name, group ids by signature, the P1 ticket."""

    crashes: dict[str, str] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    ticket_id: int | None = None


def upload_symbols(crashd: Crashd, client: Any) -> None:
    """The game module's .sym through the symbol upload API, as symupload sends it."""
    module = read_minidump(game_dump(TICK)).modules[0]
    body, ctype = multipart({}, [("symbol_file", "game.sym", GAME_SYM.replace("ID", module.debug_id).encode(),
                                  "application/octet-stream")])
    response = client.post(f"/api/{crashd.project.id}/symbols/?key={crashd.upload_token}", content=body,
                           headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text


def upload_crash(crashd: Crashd, client: Any, dump: bytes, tester: str, build: str,
                 logs: dict[str, str] | None = None, **fields: str) -> str:
    """POST a dump (with log attachments and form fields) to the minidump endpoint."""
    files = [("upload_file_minidump", "crash.dmp", dump, "application/octet-stream")]
    files += [(f"log{i}", name, text.encode(), "text/plain") for i, (name, text) in enumerate((logs or {}).items())]
    body, ctype = multipart({"guid": str(uuid.uuid4()), "tester_id": tester, "ver": build, **fields}, files)
    response = client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}", content=body,
                           headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text.strip()


def post_sessions(crashd: Crashd, client: Any, build: str, count: int, crashed: int) -> None:
    """count sessions of build started an hour ago, the first `crashed` of them crashed."""
    started = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    body = [{"session_id": f"{build}-{i}", "tester_id": f"tester-{i % 12}", "build": build, "started": started,
             "duration": 900, "status": "crashed" if i < crashed else "exited"} for i in range(count)]
    response = client.post(f"/api/{crashd.project.id}/sessions/?sentry_key={crashd.key}", json=body)
    assert response.status_code == 200, response.text


PANIC_LOG = ("boot ok\nloading level <b>forest</b>\n"
             "thread 'main' panicked at src/world.rs:42:7: index out of bounds " + XSS + "\nshutting down\n")
GGML_LOG = "llama init\nggml.c:1234: GGML_ASSERT(ctx->mem_buffer != NULL) failed\n"


def seed(crashd: Crashd, client: Any | None = None) -> World:
    """Symbols, 11 crashes in 5 groups over two builds, sessions; runs the queue to the end.
    World::tick crashes for four testers (a P1 ticket by the `spreading` rule)."""
    client = client or crashd.client
    world = World()
    upload_symbols(crashd, client)
    for i in range(4):
        world.crashes[f"tick{i}"] = upload_crash(crashd, client, game_dump(TICK, i), f"tester-{i}", BETA1,
                                                 logs={"game.log": PANIC_LOG} if i == 0 else None,
                                                 note=XSS if i == 0 else "fine")
    world.crashes["tick-beta2"] = upload_crash(crashd, client, game_dump(TICK, 10), "tester-1", BETA2)
    for i in range(2):
        world.crashes[f"ggml{i}"] = upload_crash(crashd, client, game_dump(GGML, 20 + i), f"tester-{i}", BETA2,
                                                 logs={"llama.log": GGML_LOG})
    world.crashes["parser"] = upload_crash(crashd, client, game_dump(PARSER, 30), "tester-7", BETA1,
                                           logs={f"{XSS}.log": "plain line\n"})
    world.crashes["windows"] = upload_crash(crashd, client, game_dump(MAIN, 40, PLATFORM_WINDOWS), "tester-8", BETA2)
    for i in range(2):
        world.crashes[f"engine{i}"] = upload_crash(crashd, client, game_dump(TICK, 50 + i, in_engine=True),
                                                   "tester-9", BETA1)
    crashd.drain()
    post_sessions(crashd, client, BETA1, 100, crashed=8)
    post_sessions(crashd, client, BETA2, 250, crashed=5)
    crashd.drain()
    for name, crash_id in world.crashes.items():
        doc = crashd.crash(crash_id)
        assert doc["status"] == "processed", (name, doc["processing_error"])
        world.groups.setdefault(doc["signature"], doc["group_id"])
    tickets = crashd.client.get("/api/tickets", headers=crashd.admin).json()["tickets"]
    world.ticket_id = next(t["id"] for t in tickets if t["group_id"] == world.groups["World::tick"])
    return world


def add_ticket(crashd: Crashd, group_id: int, title: str, priority: str = "P0") -> int:
    """A second ticket in the project, as a threshold rule would open it; returns its id."""
    from schemas.tables import Ticket, utcnow
    from storage.db import session

    with session(crashd.state.ctx.engine) as s:
        ticket = Ticket(project_id=crashd.project.id, group_id=group_id, priority=priority, title=title,
                        rule="widespread", due_at=utcnow() + timedelta(hours=24))
        s.add(ticket)
        s.commit()
        assert ticket.id is not None
        return ticket.id


# -- users ----------------------------------------------------------------------------------


def create_user(crashd: Crashd, name: str, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`crashd user create NAME --role ROLE` with the password on stdin."""
    from server.cli.users import cmd_user_create

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cmd_user_create(crashd.settings, argparse.Namespace(name=name, role=role)) == 0


def csrf_of(page: str) -> str:
    """The csrf_token hidden field of an HTML page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no csrf_token field on the page"
    return match.group(1)
