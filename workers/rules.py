"""The processing rules, and DEFAULT_RULES: the order workers/pipeline.py runs them in.

Each rule's docstring says what it adds to the processed crash (docs/processing.md lists them,
checked by tests/test_processing_docs.py); its ``failure`` is the note, in words, when it raises.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from schemas.tables import utcnow
from storage import queries
from storage.blobs import BlobNotFound, day_key
from storage.groups import Grouping, missing_stored_since, record_missing_symbols
from storage.regroup import place_crash
from storage.symbol_use import RESOLUTION, mark_used
from symbolicator.minidump import read_minidump
from symbolicator.process import walk_all_threads
from symbolicator.report import build_report
from triage.components import classify
from triage.kinds import HANG
from triage.signature.generator import generate
from triage.signature.special import hang_reason
from workers.context import WorkerContext
from workers.event_stack import event_report
from workers.rule import ProcessingState, Rule
from workers.triage_jobs import evaluate_group, notify, worker_queue


class VerifyMinidumpRule(Rule):
    """Adds ``minidump{size, sha256}`` read back from the blob store and checks them against
    what ingest recorded. A missing or altered blob is fatal: nothing else can run. Skipped
    for a Sentry event without a minidump (EventStackRule)."""

    failure = "could not read the stored minidump back"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.crash.minidump_key is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        assert state.crash.minidump_key is not None  # predicate() runs first
        try:
            state.raw = ctx.blobs.read_bytes(state.crash.minidump_key)
        except BlobNotFound:
            state.fatal = f"minidump blob missing: {state.crash.minidump_key}"
            return
        digest = hashlib.sha256(state.raw).hexdigest()
        state.processed["minidump"] = {"size": len(state.raw), "sha256": digest}
        if digest != state.crash.minidump_sha256 or len(state.raw) != state.crash.minidump_size:
            state.fatal = "minidump blob does not match the uploaded size/sha256"


class CopyAnnotationsRule(Rule):
    """Adds ``product``, ``build`` and ``tester_id`` as ingest resolved them."""

    failure = "could not copy the product, build and tester"

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        crash = state.crash
        state.processed.update(product=crash.product, build=crash.build, tester_id=crash.tester_id)


class ReadMinidumpRule(Rule):
    """Reads the dump's streams; adds ``annotations``: those found inside the dump
    (Crashpad's) under the upload's form fields, which win. Reader notes become notes."""

    failure = "could not read the minidump's streams"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.raw is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        assert state.raw is not None
        state.dump = read_minidump(state.raw)
        state.notes.extend(state.dump.notes)
        state.processed["annotations"] = {**state.dump.annotations, **(state.crash.annotations or {})}


class WalkStacksRule(Rule):
    """Walks every thread (crashing thread first) within the job's time limit."""

    failure = "could not walk the stacks"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.dump is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        symbols = ctx.symbols.for_project(state.crash.project_id)  # its project's store, then the shared one
        state.threads, notes = walk_all_threads(state.dump, symbols, state.deadline)
        state.notes.extend(notes)


class EventStackRule(Rule):
    """For a Sentry event without a minidump: reads the event JSON back from the blob store
    and builds the report from its own stack trace (workers/event_stack.py), stored like
    ReportRule's; adds ``annotations`` (the event's, as ingest stored them). A missing event
    blob is fatal."""

    failure = "could not build a stack from the event"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        crash = state.crash
        return state.fatal is None and crash.minidump_key is None and crash.event_key is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        try:
            event = json.loads(ctx.blobs.read_bytes(state.crash.event_key))  # type: ignore[arg-type]
        except BlobNotFound:
            state.fatal = f"event blob missing: {state.crash.event_key}"
            return
        store_report(ctx, state, event_report(event if isinstance(event, dict) else {},
                                             ctx.symbols.for_project(state.crash.project_id)))
        state.processed["annotations"] = dict(state.crash.annotations or {})


class ReportRule(Rule):
    """Builds the rust-minidump-style report: stored whole as JSON in the blob store
    (``processed/<day>/<crash_id>.json``); ``processed`` keeps its summary for the row."""

    failure = "could not build the report"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.threads is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        store_report(ctx, state, build_report(state.dump, state.threads or [],
                                               ctx.symbols.for_project(state.crash.project_id), []))


def store_report(ctx: WorkerContext, state: ProcessingState, report: dict[str, Any]) -> None:
    """Put report whole in the blob store (``processed/<day>/<crash_id>.json``), its summary
    and key in ``processed``, and keep it for the rules after."""
    key = day_key("processed", state.crash.received_at, f"{state.crash.crash_id}.json")
    ctx.blobs.put_bytes(key, json.dumps(report, separators=(",", ":")).encode())
    state.processed.update(summarize(report), report_key=key)
    state.report = report


class SymbolUseRule(Rule):
    """Records that the uploaded debug files of the modules whose symbols the report loaded
    were used now (storage/symbol_use.py, at most once a day per module), so that
    ``crashd symbols prune`` keeps what crashes still need."""

    failure = "could not record which debug files were used"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.report is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        now, marked = utcnow(), ctx.symbols_marked
        loaded = {(str(m["debug_file"]).lower(), str(m["debug_id"]).upper())
                  for m in (state.report or {}).get("modules", [])
                  if m.get("loaded_symbols") and m.get("debug_file") and m.get("debug_id")}
        due = {m for m in loaded if m not in marked or now - marked[m] >= RESOLUTION}
        if due:  # most crashes: none, and no query (this process recorded them today)
            mark_used(ctx.engine, modules=due, now=now)
            marked.update(dict.fromkeys(due, now))


class SignatureRule(Rule):
    """Adds ``signature``, ``signature_version`` and ``signature_notes`` (triage/signature:
    a pure function of the crashing thread and the annotations). A crash that ingest found to
    be a hang (a Sentry AppHang/watchdog event: kind ``hang``) is signed as one, with the thread
    its ``hang_thread`` names, also when its annotations do not say so."""

    failure = "could not generate a signature"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.report is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        crash = state.crash
        annotations = dict(state.processed.get("annotations") or crash.annotations or {})
        if crash.kind == HANG and hang_reason(annotations) is None:
            annotations["hang_reason"] = "kind hang (decided at ingest)"
            if crash.hang_thread and "hang_thread" not in annotations:
                annotations["hang_thread"] = crash.hang_thread
        result = generate(state.report or {}, annotations)
        state.processed.update(signature=result.signature, signature_version=result.version,
                               signature_notes=result.notes)


class EventMessageSignatureRule(Rule):
    """An event without a stack trace (``capture_message``) is signed by its message, the way
    Sentry groups messages: replaces the EMPTY signature SignatureRule found."""

    failure = "could not sign the event by its message"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and bool((state.report or {}).get("signature_hint"))

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        hint = str((state.report or {})["signature_hint"])
        state.processed["signature_notes"] = [*state.processed.get("signature_notes", []),
                                              "no stack trace in the event: the signature is its message"]
        state.processed["signature"] = " ".join(hint.split())[:255] or hint[:255]


class ComponentRule(Rule):
    """Adds ``component``, ``reason_text`` and ``component_notes`` from the top trusted frames
    and the text attachments (a GGML_ASSERT or Rust panic line in a log)."""

    failure = "could not find the component"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.report is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        result = classify(state.report or {}, read_logs(ctx, state.crash.crash_id))
        state.processed.update(component=result.component, reason_text=result.reason_text,
                               component_notes=result.notes)


LOG_TAIL_BYTES = 1024 * 1024


def read_logs(ctx: WorkerContext, crash_id: str) -> list[str]:
    """The last MiB of each text attachment (logs end with what went wrong)."""
    logs = []
    for attachment in queries.get_attachments(ctx.engine, crash_id=crash_id):
        name = (attachment.filename or attachment.name).lower()
        textual = (attachment.content_type or "").startswith("text/") or name.endswith((".log", ".txt"))
        if not textual and "log" not in name:
            continue
        try:
            with ctx.blobs.open(attachment.blob_key) as handle:
                handle.seek(max(0, attachment.size - LOG_TAIL_BYTES))
                logs.append(handle.read(LOG_TAIL_BYTES).decode("utf-8", "replace"))
        except BlobNotFound:
            continue
    return logs


class GroupRule(Rule):
    """Counts the crash in the group of its (project, signature), or in the group a person
    merged that signature into (storage/regroup.py), and records which modules' symbols were
    missing in the crashing thread, so the crash is reprocessed when they arrive (at once,
    once this run is saved, when they arrived while it was being processed). When the
    crash moved (reprocessing gave it a new signature), the old group's ticket follows the
    crashes (``regrouped``). Adds ``group_id``, and ``moved_from`` and ``ticket_changes`` when
    it moved."""

    failure = "could not count the crash in its group"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and "signature" in state.processed

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        crash, processed = state.crash, state.processed
        report = state.report or {}
        placed = place_crash(ctx.engine, settings=ctx.settings, grouping=Grouping(
            crash_id=crash.crash_id, project_id=crash.project_id, signature=processed["signature"],
            signature_version=processed["signature_version"], component=processed.get("component"),
            reason_text=processed.get("reason_text"), platform=report.get("system_info", {}).get("os"),
            seen_at=queries.as_utc(crash.received_at), kind=crash.kind,
        ))
        processed["group_id"] = placed.group_id
        if placed.moved_from is not None:
            processed["moved_from"] = placed.moved_from
        if placed.changes:
            processed["ticket_changes"] = [f"{c.ticket_id}:{c.action}" for c in placed.changes]
            notify(worker_queue(ctx), placed.changes)
        missing = missing_in_crashing_thread(report)
        record_missing_symbols(ctx.engine, crash_id=crash.crash_id, modules=missing)
        arrived = missing and missing_stored_since(ctx.engine, crash_id=crash.crash_id, project_id=crash.project_id,
                                                   since=state.started_at)
        if arrived:  # the upload looked for crashes that lacked them before this one said so
            state.again = f"symbols of {', '.join(arrived)} arrived while the crash was processed"


class ThresholdRule(Rule):
    """Checks the threshold rules (CRASHD_RULES_FILE) on the crash's group now that the crash
    is counted in it (workers/triage_jobs.py): opens the group's ticket or escalates it to P0,
    and reopens a resolved ticket as regressed when this crash's build is at or after its
    fixed_in. Adds ``ticket_changes`` (e.g. ``["7:opened"]``) when it changed a ticket."""

    failure = "could not check the threshold rules"

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        return state.fatal is None and state.processed.get("group_id") is not None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        changes = evaluate_group(ctx, state.processed["group_id"])
        if changes:
            state.processed["ticket_changes"] = [*state.processed.get("ticket_changes", []),
                                                 *(f"{c.ticket_id}:{c.action}" for c in changes)]
            notify(worker_queue(ctx), changes)


def missing_in_crashing_thread(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(debug_file, debug_id) of modules with frames in the crashing thread but no symbols."""
    names = {f["module"] for f in (report.get("crashing_thread") or {}).get("frames", [])
             if f.get("missing_symbols") and f.get("module")}
    return {(m["debug_file"], m["debug_id"]) for m in report.get("modules", [])
            if m["filename"] in names and m.get("missing_symbols") and m.get("debug_file") and m.get("debug_id")}


def stack_modules(thread: dict[str, Any], limit: int = 64) -> list[str]:
    """The modules with frames in a thread's stack, in stack order, each once (at most limit):
    what ``module=`` searches (docs/search.md)."""
    seen: dict[str, None] = {}
    for frame in thread.get("frames", []):
        if frame.get("module") and len(seen) < limit:
            seen.setdefault(frame["module"], None)
    return list(seen)


def summarize(report: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """What the crash row keeps: crash reason and address, OS/CPU, the top of the crashing
    thread, and which modules' symbols were loaded, missing or corrupt."""
    crashing = report.get("crashing_thread") or {}
    modules = report.get("modules", [])

    def names(flag: str) -> list[str]:
        return [f"{m['debug_file']}/{m['debug_id']}" for m in modules if m.get(flag)]

    return {
        "crash_reason": report["crash_info"]["type"],
        "crash_address": report["crash_info"]["address"],
        "crashing_thread": report["crash_info"]["crashing_thread"],
        "os": report["system_info"]["os"],
        "cpu_arch": report["system_info"]["cpu_arch"],
        "os_version": report["system_info"].get("os_ver"),
        "cpu_info": report["system_info"].get("cpu_info"),
        "stack_modules": stack_modules(crashing),
        "top_frames": [
            {k: f.get(k) for k in ("frame", "trust", "module", "module_offset", "function", "file", "line")}
            for f in crashing.get("frames", [])[:top]
        ],
        "loaded_symbols": names("loaded_symbols"),
        "missing_symbols": names("missing_symbols"),
        "corrupt_symbols": names("corrupt_symbols"),
    }


# The order is the data flow: each rule's predicate waits for what an earlier one added.
DEFAULT_RULES: tuple[Rule, ...] = (
    VerifyMinidumpRule(),  # first: a missing or altered dump is fatal, and nothing after may read it
    CopyAnnotationsRule(),  # product, build, tester as ingest resolved them: needs only a dump that is not fatal
    ReadMinidumpRule(),  # the streams of the verified bytes; its annotations are the signature's input
    WalkStacksRule(),  # needs the read dump; the slowest rule, so it runs before anything optional
    EventStackRule(),  # a Sentry event without a dump: instead of the three above (its predicate excludes them)
    ReportRule(),  # needs the walked threads; stores the report every later rule reads
    SymbolUseRule(),  # right after the report: which symbols were loaded, even if signing fails later
    SignatureRule(),  # needs the report and the annotations
    EventMessageSignatureRule(),  # replaces the EMPTY signature SignatureRule gave an event without a stack
    ComponentRule(),  # needs the report and the logs; the signature does not need it, the group does
    GroupRule(),  # needs the final signature and component: the group's key and its fields
    ThresholdRule(),  # last: needs the crash counted in its group before a rule can fire on it
)
