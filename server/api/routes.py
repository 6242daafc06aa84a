"""The JSON API wing's routes, in the order server/app.py mounts them (after the upload
routes, before the dashboard's pages). The health and version endpoints sit here too:
they answer JSON (or plain ``OK``) for load balancers and monitoring.
"""

from __future__ import annotations

from starlette.routing import Route

from server.api import (
    builds,
    crashes,
    feedback,
    groups,
    health,
    openapi,
    releases,
    search,
    security,
    symbols,
    tickets,
    trends,
    triage,
    turnaround,
)

ROUTES = [
    Route("/api/symbols/{debug_file}/{debug_id}", symbols.lookup_endpoint, methods=["GET"]),
    Route("/api/crashes", search.search_endpoint, methods=["GET"]),
    Route("/api/facets", search.facets_endpoint, methods=["GET"]),
    Route("/api/crashes/{crash_id}", crashes.crash_detail, methods=["GET"]),
    Route("/api/crashes/{crash_id}/minidump", crashes.crash_minidump, methods=["GET"]),
    Route("/api/crashes/{crash_id}/attachments/{name:path}", crashes.crash_attachment, methods=["GET"]),
    Route("/api/discards", crashes.discards, methods=["GET"]),
    Route("/api/feedback", feedback.list_endpoint, methods=["GET"]),
    Route("/api/feedback/{feedback_id}/attachments/{name:path}", feedback.attachment_endpoint, methods=["GET"]),
    Route("/api/groups", groups.list_endpoint, methods=["GET"]),
    Route("/api/groups/{group_id:int}", groups.detail_endpoint, methods=["GET"]),
    Route("/api/groups/{group_id:int}/merge", groups.merge_endpoint, methods=["POST"]),
    Route("/api/groups/{group_id:int}/unmerge", groups.unmerge_endpoint, methods=["POST"]),
    Route("/api/builds", builds.list_endpoint, methods=["GET"]),
    Route("/api/builds/compare", builds.compare_endpoint, methods=["GET"]),
    Route("/api/trends", trends.trends_endpoint, methods=["GET"]),  # docs/rates.md, Trends
    Route("/api/tickets", tickets.list_endpoint, methods=["GET"]),
    Route("/api/tickets/{ticket_id:int}", tickets.detail_endpoint, methods=["GET"]),
    Route("/api/tickets/{ticket_id:int}/timeline", security.timeline_endpoint, methods=["POST"]),  # before {action}
    Route("/api/tickets/{ticket_id:int}/{action}", tickets.action_endpoint, methods=["POST"]),
    Route("/api/{project}/releases/", releases.releases_endpoint, methods=["POST"]),  # CI: docs/releases.md
    Route("/api/triage", triage.triage_endpoint, methods=["GET"]),  # JSON twins of dashboard pages
    Route("/api/turnaround", turnaround.turnaround_endpoint, methods=["GET"]),
    Route("/api/symbols", symbols.symbols_endpoint, methods=["GET"]),
    Route("/api/openapi.json", openapi.openapi_endpoint, methods=["GET"]),  # built from the app's routes
    Route("/__heartbeat__", health.heartbeat, methods=["GET"]),
    Route("/__lbheartbeat__", health.lbheartbeat, methods=["GET"]),
    Route("/__version__", health.version, methods=["GET"]),
]
