"""What server/api/openapi.py says about each route: DESCRIBED maps (method, Starlette path) to
its summary, query parameters, auth, request body and response; SCHEMAS holds the shared
response shapes. "auth" is "key" (an ingest key only: crash clients), "ingest" (an ingest
key or a bearer token), "none", or absent (a bearer token); "errors" are answered as
``{"detail": ...}`` unless "error_content" says otherwise. When you add a route to
server/app.py, add its entry here (the test in tests/test_openapi.py names any route left
out). Field meanings: docs/*.md.
"""

from __future__ import annotations

from typing import Any

from triage.feedback import CATEGORIES as FEEDBACK_CATEGORIES
from triage.kinds import KINDS, LEVELS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def obj(**properties: Schema) -> Schema:
    return {"type": "object", "properties": properties}


def arr(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def json_ok(schema: Schema, text: str = "OK") -> Schema:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


S, I, N, B = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}  # noqa: E741 - I: integer
T = {"type": "string", "format": "date-time"}
T_NULL = nullable("string", format="date-time")
ANY = {"type": "object", "additionalProperties": True}
KIND = {"type": "string", "enum": list(KINDS), "description": "what the event is (docs/triage.md, Kinds of events)"}
LEVEL = {"type": ["string", "null"], "enum": [*LEVELS, None], "description": "the Sentry level; minidumps: fatal"}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(detail=S),
    "Group": obj(
        id=I, group_id=I, project_id=I, project=S, signature=S, signature_version=nullable("string"),
        component=nullable("string"), reason_text=nullable("string"), kind=KIND, crash_count=I, tester_count=I,
        build_count=I, first_seen=T, last_seen=T, ticket_id=nullable("integer"), ticket_status=nullable("string"),
        ticket_priority=nullable("string"), sparkline=arr(I), build_crash_count=I),
    "GroupList": obj(groups=arr(ref("Group")), total=I, limit=I, offset=I),
    "Ticket": obj(
        ticket_id=I, status=S, priority=S, title=S, reason_text=nullable("string"), rule=S, due_at=T,
        fixed_in=nullable("string"), external_key=nullable("string"), external_url=nullable("string"),
        created_at=T, updated_at=T, actions=arr(S),
        history=arr(obj(id=I, at=T, actor=S, action=S, details=ANY))),
    "GroupPage": {"allOf": [ref("Group"), obj(
        builds=arr(obj(build=S, crashes=I, crash_count=I, sessions=I, crash_rate=nullable("number"),
                       first_seen={**T_NULL, "description": "null: a build played since the group's first crash "
                                                            "in which it never crashed (crashes 0)"},
                       last_seen=T_NULL)),
        platforms={"type": "object", "additionalProperties": I},
        testers=arr(obj(tester_id=S, crashes=I, first_seen=T, last_seen=T)),
        crashes=arr(obj(crash_id=S, build=nullable("string"), tester_id=nullable("string"),
                        platform=nullable("string"), status=S, received_at=T, kind=KIND, level=LEVEL)),
        representative_crash_id=nullable("string"), ticket={"oneOf": [ref("Ticket"), {"type": "null"}]},
        representative_crash=nullable("object"), merged_into=nullable("integer"),
        merged_signatures=arr(obj(signature=S, actor=S, merged_at=T, crash_count=I)))]},
    "CrashHit": obj(crash_id=S, project_id=I, project=S, received_at=T, status=S, kind=KIND,
                    build=nullable("string"), tester_id=nullable("string"), platform=nullable("string"),
                    signature=nullable("string"), component=nullable("string"), group_id=nullable("integer"),
                    hang_seconds=nullable("number"), annotations=ANY),
    "CrashSearch": obj(crashes=arr(ref("CrashHit")), total=I, limit=I, offset=I),
    "Facets": obj(total=I, sample=nullable("integer"),
                  facets=arr(obj(field=S, values=arr(obj(value=S, count=I)), other=I, distinct=I,
                                 missing=nullable("integer")))),
    "Regrouped": obj(group_id=I, into=I, crashes_moved=I, groups={"type": "object", "additionalProperties": I},
                     ticket_changes=arr(obj(ticket_id=I, action=S))),
    "Feedback": obj(id=S, project_id=I, group_id=nullable("integer"), category=S, message=S,
                    text_key=nullable("string"), tester_id=nullable("string"), build=nullable("string"),
                    platform=nullable("string"), crash_id=nullable("string"), event_id=nullable("string"),
                    url=nullable("string"), source={"type": "string", "enum": ["api", "feedback", "user_report"]}, received_at=T,
                    attachments=arr(obj(name=S, filename=nullable("string"), content_type=nullable("string"),
                                        size=I))),
    "Crash": obj(crash_id=S, status=S, project=S, project_id=I, received_at=T, processed_at=T_NULL,
                 build=nullable("string"), tester_id=nullable("string"), annotations=ANY, attachments=arr(ANY),
                 signature=nullable("string"), component=nullable("string"), reason_text=nullable("string"),
                 group_id=nullable("integer"), platform=nullable("string"), kind=KIND, level=LEVEL,
                 hang_seconds=nullable("number", description="a hang's duration (docs/hangs.md)"),
                 hang_thread=nullable("string", description="the hung thread's id or name"),
                 processed=nullable("object"),
                 stackwalk=nullable("object"), feedback=arr(ref("Feedback"))),
    "TicketRow": obj(id=I, project_id=I, group_id=nullable("integer"), merged_into=nullable("integer"),
                     notice=nullable("string"), kind=nullable("string"), priority=S, state=S, title=S, due_at=T,
                     fixed_in=nullable("string"), signature=S, component=nullable("string"), crash_count=I,
                     tester_count=I),
    "BoardTicket": {"allOf": [ref("Ticket"), obj(group_id=I, signature=S, component=nullable("string"),
                                                 tester_count=I, crash_count=I, seconds_left=N, overdue=B,
                                                 notice=nullable("string"),
                                                 verification=nullable("object"))]},
    "TriageBoard": obj(now=T, open_tickets=arr(ref("BoardTicket")), spreading=arr(ref("Group")),
                       regressions=arr(ref("BoardTicket")), awaiting_verification=arr(ref("BoardTicket")),
                       report_markdown=S, turnaround=ref("Turnaround")),
    "SymbolsPage": obj(
        files=arr(obj(debug_file=S, debug_id=S, code_file=nullable("string"), code_id=nullable("string"),
                      os=nullable("string"), cpu=nullable("string"), format=S, size=I, sha256=S, path=S,
                      uploaded_at=T, project_id=nullable("integer"), project=nullable("string"))),
        missing=arr(obj(debug_file=S, debug_id=S, code_file=nullable("string"), crashes=I, groups=I,
                        last_seen=T, uploaded=B))),
    "Builds": obj(builds=arr(obj(build=S, sessions=I, crashed_sessions=I, crash_rate=nullable("number"),
                                 crashes=I, hang_count=I, hang_rate=nullable("number"), first_seen=T_NULL))),
    "Trends": obj(
        project=S, project_id=I, group_id=nullable("integer"), days=arr({"type": "string", "format": "date"}),
        builds=arr(obj(build=S, series=arr(obj(
            day={"type": "string", "format": "date"}, sessions=I,
            session_hours=nullable("number", description="null where no session reported a duration"),
            crashes=I, crashes_per_session=nullable("number", description="null without sessions"),
            crashes_per_1k_session_hours=nullable("number"), hangs=I, hangs_per_session=nullable("number"),
            feedback=I))))),
    "Turnaround": obj(
        tickets=arr(obj(id=I, project_id=I, title=S, priority=S, state=S, fixed_in=nullable("string"),
                        restricted=B, opened_at=T, resolved_at=T_NULL, deployed_at=T_NULL,
                        deployed_by={"type": ["string", "null"], "enum": ["release", "first_session", "first_crash",
                                                                          None]},
                        verified_at=T_NULL, due_at=T, hours_to_deploy=nullable("number"),
                        on_time=nullable("boolean"), status=S, target_hours=N)),
        summary={"type": "object", "additionalProperties": obj(
            tickets=I, deployed=I, target_hours=nullable("number"), within_target=I, on_time=I, late=I, overdue=I,
            pending=I, median_hours=nullable("number"))},
        summary_text=arr(S)),
    "BuildsCompare": obj(
        base=S, target=S, base_sessions=I, target_sessions=I, base_crash_rate=nullable("number"),
        target_crash_rate=nullable("number"), min_sessions=I, alpha=N, enough_sessions=B,
        groups=arr(obj(group_id=I, signature=S, component=nullable("string"), base_crashes=I, target_crashes=I,
                       base_rate=nullable("number"), target_rate=nullable("number"), change=nullable("number"),
                       p_value=nullable("number"), significant=B, reason=S)),
        hangs=obj(base_hangs=I, target_hangs=I, base_hang_rate=nullable("number"),
                  target_hang_rate=nullable("number"), change=nullable("number"), p_value=nullable("number"),
                  significant=B, reason=S),
        auto=nullable("object", properties={"by": {"type": "string", "enum": ["release", "build_order"]},
                                             "label": S})),
}


def bounded(low: int | None = None, high: int | None = None, kind: str = "integer") -> Schema:
    """An integer (or number) query parameter's schema with the bounds the server checks."""
    schema: Schema = {"type": kind}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def enum(words: str) -> Schema:
    return {"type": "string", "enum": words.split()}


MAX_OFFSET = 2**63 - 1  # the largest offset a page query takes (server/api/params.py)
REQUIRED_TEXT = {"type": "string", "minLength": 1}
TICKET_STATES = "(open|resolved|verified|regressed|wontfix|duplicate)"
PROJECT = ("project", "string", "a project id or name (404 when unknown)")
REQUIRED_PROJECT = ("project", REQUIRED_TEXT, "required: a project id or name")
SINCE = ("since", "string", "24h, 7d, 2w or an ISO date")
SEARCH_OPERATORS = ("value equals; =v equals literally; ^v starts with; ~v contains (any case); !v, !^v, !~v not; "
                    "repeat the parameter for OR")
SEARCH_FIELDS = [
    *((name, "string", f"{what}: {SEARCH_OPERATORS}") for name, what in (
        ("build", "the build"), ("platform", "the OS"), ("os_version", "the OS version"),
        ("cpu", "the CPU architecture"), ("cpu_info", "the CPU's vendor, family, model"),
        ("component", "the component"), ("kind", "crash hang error message"), ("tester_id", "the tester"),
        ("signature", "the signature (default: contains)"), ("module", "a module in the crashing thread's stack"),
        ("status", "received processing processed failed"), ("annotations.<key>", "any annotation"))),
    ("received", "string", ">=, >, <=, < an ISO time or 24h/7d/2w ago; or a date (that UTC day)"),
    ("hang_seconds", "string", ">=, >, <=, < a number of seconds"),
    ("group", "string", "a group id"),
]
UPLOAD = {"auth": "key", "errors": (400, 401, 413, 429, 503),
          "body": ("multipart/form-data", {"type": "object", "description": "upload_file_minidump plus annotations"}),
          "ok": {"description": "the crash id", "content": {"text/plain": {"schema": S}}}}
BINARY = {"type": "string", "format": "binary"}

DESCRIBED: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/{project}/minidump/"): {**UPLOAD, "id": "uploadMinidump",
                                          "summary": "Upload a crash (Crashpad, sentry-native, Breakpad multipart)"},
    ("POST", "/submit"): {**UPLOAD, "id": "submitCrash", "summary": "Upload a crash, Socorro/Breakpad style (?key=)",
                          "ok": {"description": "CrashID=bp-<crash id>, or Discarded=rate_limited",
                                 "content": {"text/plain": {"schema": S}}},
                          "error_content": {"text/plain": {"schema": {**S, "description": "Discarded=<reason>"}}}},
    ("POST", "/api/{project}/envelope/"): {
        "id": "sentryEnvelope", "auth": "key", "errors": (400, 401, 413, 429, 503),
        "summary": "Sentry envelope: events, attachments, minidumps, sessions (docs/sentry.md)",
        "body": ("application/x-sentry-envelope", S), "ok": json_ok(obj(id=nullable("string")))},
    ("POST", "/api/{project}/store/"): {
        "id": "sentryStore", "auth": "key", "errors": (400, 401, 413, 429, 503),
        "summary": "One Sentry event as JSON (older SDKs)", "body": ("application/json", ANY),
        "ok": json_ok(obj(id=nullable("string")))},
    ("POST", "/api/{project}/symbols/"): {
        "id": "uploadSymbols", "errors": (400, 401, 403, 404, 413, 503),
        "summary": "Upload debug files (symupload, a .sym, a native debug file or a zip)",
        "description": "Takes an API token (an admin's, or the project's `uploader` token), as a bearer "
                       "token or `?key=` (Breakpad's symupload); never an ingest key (403 `symbols_need_token`). "
                       "`_` as the project: the shared store (admins), or an uploader token's project.",
        "body": ("multipart/form-data", {"type": "object"}),
        "ok": json_ok(obj(files=arr(ANY)))},
    ("GET", "/api/{project}/symbols/v1/symbols/{debug_file}/{debug_id}"): {
        "id": "symUploadV2CheckStatus", "errors": (401, 403, 404, 503),
        "summary": "sym-upload-v2: whether the store has a module (`<debug_id>:checkStatus`; token in `?key=`)",
        "ok": json_ok(obj(status=S))},
    ("POST", "/api/{project}/symbols/v1/uploads:create"): {
        "id": "symUploadV2Create", "errors": (401, 403, 404, 503),
        "summary": "sym-upload-v2: a new upload key and the URL to PUT the file to (token in `?key=`)",
        "ok": json_ok(obj(uploadUrl=S, uploadKey=S))},
    ("PUT", "/api/{project}/symbols/v1/uploads/{upload}"): {
        "id": "symUploadV2Put", "errors": (400, 404, 413),
        "summary": "sym-upload-v2: the file, PUT to the upload URL (its key is the credential)",
        "body": ("application/octet-stream", S), "ok": json_ok(obj())},
    ("POST", "/api/{project}/symbols/v1/uploads/{upload}"): {
        "id": "symUploadV2Complete", "errors": (400, 401, 403, 404, 413, 503),
        "summary": "sym-upload-v2: `<uploadKey>:complete` stores the PUT file for the module the body names",
        "ok": json_ok(obj(result=S))},
    ("GET", "/api/symbols/{debug_file}/{debug_id}"): {
        "id": "lookupSymbols", "auth": "ingest", "summary": "The stored files of a module",
        "query": [("sha256", "string", "only the file with this content")], "errors": (400, 401, 404),
        "ok": json_ok(obj(files=arr(ANY)))},
    ("GET", "/api/symbols"): {
        "id": "symbolsPage", "summary": "Uploaded debug files and missing symbols ranked by crashes they would fix",
        "query": [PROJECT, ("limit", bounded(1, 1000), "rows per list, 1..1000, default 200")],
        "errors": (400, 401, 404),
        "ok": json_ok(ref("SymbolsPage"))},
    ("GET", "/api/crashes/{crash_id}"): {
        "id": "getCrash", "summary": "One crash: status, annotations, signature, group, processed report",
        "errors": (401, 404), "ok": json_ok(ref("Crash"))},
    ("GET", "/api/crashes/{crash_id}/minidump"): {
        "id": "getMinidump", "summary": "The raw minidump, or its vendor-safe copy (docs/privacy.md)",
        "query": [("vendor_safe", {"type": "string", "enum": ["1", "true", "yes"]},
                   "a copy with heap, environment and the stack memory the walks do not read zeroed; "
                   "refused (409) unless it walks exactly like the dump")],
        "errors": (401, 404, 409, 410),
        "ok": {"description": "the dump", "content": {"application/x-dmp": {"schema": BINARY}}}},
    ("GET", "/api/crashes/{crash_id}/attachments/{name:path}"): {  # a name may hold "/"
        "id": "getAttachment", "summary": "One attachment of a crash", "errors": (401, 404, 410),
        "ok": {"description": "the bytes, as the Content-Type the client sent with them",
               "content": {"*/*": {"schema": BINARY}}}},
    ("POST", "/api/{project}/security/"): {
        "id": "sendSecurityReport", "auth": "key", "errors": (400, 401, 413, 429, 503),
        "summary": "A tester's security report (summary, details, tester_id, build, files): a restricted P0 "
                   "ticket at once (docs/security-reports.md)",
        "body": ("multipart/form-data", obj(summary=S, details=S, tester_id=S, build=S)),
        "ok": json_ok(obj(id=S, receipt=S))},
    ("POST", "/api/{project}/releases/"): {
        "id": "postRelease", "errors": (400, 401, 403, 404, 413),
        "summary": "A version deployed to an environment: resolves the tickets its commits fix, sends patch notes "
                   "once (docs/releases.md)",
        "description": "Takes an admin token or the project's `deployer` token (`_` as the project: the token's "
                       "own); never an ingest key (403). Idempotent per (project, version, environment): a second "
                       "post answers `created: false` and changes nothing.",
        "body": ("application/json", obj(version=S, environment=S, deployed_at=T, url=S, commits=arr(
            obj(id=S, message=S, author=S)))),
        "ok": json_ok(obj(release=ANY, created=B, resolved=arr(I), already_resolved=arr(I), unknown=arr(S),
                          skipped=arr(ANY), patch_notes={"type": "string", "enum": [
                              "sent", "not configured", "already sent", "failed"]}))},
    ("POST", "/api/tickets/{ticket_id:int}/timeline"): {
        "id": "securityTimeline", "errors": (400, 401, 403, 404),
        "summary": "Record a security report's disclosure step: acknowledged, confirmed, rejected, fixed (build), "
                   "tester_told, disclosed (security grant and triager role)",
        "body": ("application/json", obj(step=S, build=S, note=S)), "ok": json_ok(ANY)},
    ("POST", "/api/{project}/feedback/"): {
        "id": "sendFeedback", "auth": "key", "errors": (400, 401, 413, 429, 503),
        "summary": "A tester's feedback (message, category, tester_id, build, platform, crash_id or event_id, "
                   "files); never a crash (docs/feedback.md)",
        "body": ("multipart/form-data", obj(message=S, category=enum(" ".join(FEEDBACK_CATEGORIES)), tester_id=S,
                                            build=S, platform=S, crash_id=S, event_id=S, url=S)),
        "ok": json_ok(obj(id=S))},
    ("GET", "/api/feedback"): {
        "id": "listFeedback", "summary": "Tester feedback, newest first, with filters",
        "query": [PROJECT, ("category", enum(" ".join(FEEDBACK_CATEGORIES)), "one of the categories"),
                  ("build", "string", "sent from this build"), ("tester", "string", "sent by this tester"),
                  ("group", bounded(1), "counted in this feedback group"),
                  ("crash", "string", "about this crash (by crash id or its Sentry event id)"),
                  ("limit", bounded(1), "1..1000, default 50; larger is cut to 1000"),
                  ("offset", bounded(0, MAX_OFFSET), ">= 0")],
        "errors": (400, 401, 404), "ok": json_ok(obj(feedback=arr(ref("Feedback")), total=I, limit=I, offset=I))},
    ("GET", "/api/feedback/{feedback_id}/attachments/{name:path}"): {
        "id": "getFeedbackAttachment", "summary": "One file of a feedback report (a screenshot as its image type)",
        "errors": (401, 404, 410),
        "ok": {"description": "the bytes: image/png, jpeg, gif or webp for a screenshot, else "
                              "application/octet-stream", "content": {"*/*": {"schema": BINARY}}}},
    ("GET", "/api/discards"): {
        "id": "discards", "summary": "Refused uploads per reason, today and all time", "errors": (401,),
        "ok": json_ok(obj(today={"type": "object", "additionalProperties": I},
                          all_time={"type": "object", "additionalProperties": I}))},
    ("GET", "/api/crashes"): {
        "id": "searchCrashes", "summary": "Crashes matching a search on any field (docs/search.md), paged and sorted",
        "query": [PROJECT, *SEARCH_FIELDS,
                  ("sort", enum("received build tester_id kind status signature platform component group hang_seconds"),
                   "default received"),
                  ("order", enum("asc desc"), "default desc"),
                  ("limit", bounded(1), "1..1000, default 50; larger is cut to 1000"),
                  ("offset", bounded(0, MAX_OFFSET), ">= 0")],
        "errors": (400, 401, 404), "ok": json_ok(ref("CrashSearch"))},
    ("GET", "/api/facets"): {
        "id": "facets", "summary": "The most frequent values of fields among the crashes a search matches",
        "query": [PROJECT, ("field", REQUIRED_TEXT, "required, up to 10 times: a search field to count "
                            "(annotations.gpu, build, os_version, cpu, module, ...)"),
                  ("limit", bounded(1, 100), "values per field, 1..100, default 10"),
                  ("latest", bounded(1, 1_000_000), "count among the latest N matched crashes only (sample: N)"),
                  *SEARCH_FIELDS],
        "errors": (400, 401, 404), "ok": json_ok(ref("Facets"))},
    ("GET", "/api/groups"): {
        "id": "listGroups", "summary": "Crash groups with filters, sorting, paging and 14-day sparklines",
        "query": [PROJECT, ("component", "string", "component name"), ("build", "string", "seen in this build"),
                  ("platform", "string", "seen on this OS"),
                  ("kind", enum(" ".join(KINDS)), "the group's kind: " + ", ".join(KINDS)),
                  ("status", enum("open resolved verified regressed wontfix duplicate none"),
                   "ticket state (open resolved verified regressed wontfix duplicate) or none"),
                  SINCE, ("sort", enum("last_seen first_seen crash_count tester_count build_count signature"),
                          "last_seen first_seen crash_count tester_count build_count signature; default tester_count"),
                  ("order", enum("asc desc"), "asc or desc"),
                  ("limit", bounded(1), "1..1000, default 100; larger is cut to 1000"),
                  ("offset", bounded(0, MAX_OFFSET), ">= 0"),
                  ("days", bounded(1, 90), "sparkline days, 1..90, default 14"),
                  *(p for p in SEARCH_FIELDS if p[0] not in ("build", "platform", "component", "kind", "status"))],
        "errors": (400, 401, 404), "ok": json_ok(ref("GroupList"))},
    ("GET", "/api/groups/{group_id:int}"): {
        "id": "getGroup", "summary": "A group: builds with crash rates, testers, crashes, ticket, stack",
        "query": [("crashes", bounded(0, 1000), "latest crashes listed, 0..1000, default 50"),
                  ("days", bounded(1, 90), "sparkline days, 1..90")],
        "errors": (400, 401, 404), "ok": json_ok(ref("GroupPage"))},
    ("POST", "/api/groups/{group_id:int}/merge"): {
        "id": "mergeGroup", "summary": "Merge the group into another; remembered across reprocessing, "
                                       "tickets follow",
        "body": ("application/json", obj(into=I)), "errors": (400, 401, 403, 404), "ok": json_ok(ref("Regrouped"))},
    ("POST", "/api/groups/{group_id:int}/unmerge"): {
        "id": "unmergeGroup", "summary": "Give signatures merged into the group (or those of crash_ids) their "
                                         "own groups again",
        "body": ("application/json", obj(signature=S, signatures=arr(S), crash_ids=arr(S))),
        "errors": (400, 401, 403, 404), "ok": json_ok(ref("Regrouped"))},
    ("POST", "/api/{project}/sessions/"): {
        "id": "uploadSessions", "auth": "key", "summary": "Report play sessions (idempotent on session_id)",
        "errors": (400, 401, 413), "body": ("application/json", arr(ANY)), "ok": json_ok(obj(accepted=I))},
    ("GET", "/api/builds"): {
        "id": "listBuilds", "summary": "Sessions, crashes, crash rate, hangs and hang rate per build, in version order",
        "query": [REQUIRED_PROJECT, SINCE], "errors": (400, 401, 404), "ok": json_ok(ref("Builds"))},
    ("GET", "/api/builds/compare"): {
        "id": "compareBuilds", "summary": "Did target crash less than base, per group (exact Poisson test)",
        "query": [REQUIRED_PROJECT, ("base", REQUIRED_TEXT, "base build; without base and target: the staging "
                                                            "release before target (docs/rates.md)"),
                  ("target", REQUIRED_TEXT, "target build; without base and target: the newest staging "
                                            "release with min_sessions sessions"), ("min_sessions", bounded(0), "default 200"),
                  ("alpha", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "default 0.05")],
        "errors": (400, 401, 404), "ok": json_ok(ref("BuildsCompare"))},
    ("GET", "/api/trends"): {
        "id": "trends", "summary": "Crashes per session and per 1,000 session-hours, hangs per session and feedback "
                                   "per build and day (docs/rates.md, Trends)",
        "query": [REQUIRED_PROJECT, ("days", bounded(1, 90), "UTC days ending today, 1..90, default 30"),
                  ("group", bounded(1, 2**31 - 1), "only this crash group's crashes, hangs and feedback (404 when "
                                                   "it is not the project's)"),
                  ("build", "string", "comma-separated builds (at most 20); default: the 8 newest with data")],
        "errors": (400, 401, 404), "ok": json_ok(ref("Trends"))},
    ("GET", "/api/tickets"): {
        "id": "listTickets", "summary": "Triage tickets, P0 first, then by due time",
        "query": [PROJECT, ("state", {"type": "string", "pattern": f"^{TICKET_STATES}(,{TICKET_STATES})*$"},
                            "comma-separated states"),
                  ("priority", {"type": "string", "pattern": "^P[01](,P[01])*$"}, "P0, P1"),
                  ("fixed_in", "string", "fix build")],
        "errors": (400, 401, 404), "ok": json_ok(obj(tickets=arr(ref("TicketRow"))))},
    ("GET", "/api/tickets/{ticket_id:int}"): {
        "id": "getTicket", "summary": "A ticket with its history", "errors": (401, 404),
        "ok": json_ok({"allOf": [ref("TicketRow"), obj(history=arr(ANY))]})},
    ("POST", "/api/tickets/{ticket_id:int}/{action}"): {
        "id": "ticketAction", "summary": "resolve, verify, reject, reopen, wontfix or duplicate a ticket",
        "body": ("application/json", obj(fixed_in=S, note=S, by=S, of=I)), "errors": (400, 401, 403, 404),
        "ok": json_ok({"allOf": [ref("TicketRow"), obj(history=arr(ANY))]})},
    ("GET", "/api/triage"): {
        "id": "triageBoard", "summary": "Open P0/P1 by due time, spreading groups, regressions, awaiting "
                                        "verification, and the daily report as Markdown",
        "query": [PROJECT], "errors": (401, 404), "ok": json_ok(ref("TriageBoard"))},
    ("GET", "/api/turnaround"): {
        "id": "turnaround", "summary": "Hours from opened to deployed to staging per P0/P1 ticket, against its "
                                       "due time, and a summary per priority (docs/triage.md, Turnaround)",
        "query": [PROJECT, SINCE], "errors": (400, 401, 404), "ok": json_ok(ref("Turnaround"))},
    ("GET", "/api/openapi.json"): {
        "id": "openapi", "auth": "none", "summary": "This document", "ok": json_ok(ANY)},
    ("GET", "/__heartbeat__"): {
        "id": "heartbeat", "auth": "none", "summary": "Database, blob store and queue answer (503 if not)",
        "errors": (503,), "ok": json_ok(obj(status=S, checks=ANY))},
    ("GET", "/__lbheartbeat__"): {
        "id": "lbheartbeat", "auth": "none", "summary": "The process answers",
        "ok": {"description": "OK", "content": {"text/plain": {"schema": S}}}},
    ("GET", "/__version__"): {
        "id": "version", "auth": "none", "summary": "What is running",
        "ok": json_ok(obj(name=S, version=S, queue=S, database=S))},
}
