"""The dashboard's routes (docs/dashboard.md). Every route here is an exact path outside
``/api``, so none can shadow an API route.
"""

from __future__ import annotations

from starlette.routing import Route

from server.dashboard import builds, crash, feedback, group, groups, search, symbols, triage

ROUTES = [
    Route("/", groups.groups_page, methods=["GET"]),
    Route("/search", search.search_page, methods=["GET"]),
    Route("/groups/{group_id:int}", group.group_page, methods=["GET"]),
    Route("/groups/{group_id:int}/merge", group.group_merge, methods=["POST"]),
    Route("/groups/{group_id:int}/unmerge", group.group_unmerge, methods=["POST"]),
    Route("/tickets/{ticket_id:int}", group.ticket_page, methods=["GET"]),
    Route("/tickets/{ticket_id:int}/{action}", group.ticket_action, methods=["POST"]),
    Route("/crashes/{crash_id}", crash.crash_page, methods=["GET"]),
    Route("/crashes/{crash_id}/minidump", crash.minidump_download, methods=["GET"]),
    Route("/crashes/{crash_id}/attachments/{name:path}", crash.attachment_download, methods=["GET"]),
    Route("/crashes/{crash_id}/reprocess", crash.reprocess, methods=["POST"]),
    Route("/triage", triage.triage_page, methods=["GET"]),
    Route("/feedback", feedback.feedback_page, methods=["GET"]),
    Route("/builds", builds.builds_page, methods=["GET"]),
    Route("/symbols", symbols.symbols_page, methods=["GET"]),
]
