"""The ingest wing's routes, in the order server/app.py mounts them (first). The sessions
upload (``POST /api/<project>/sessions/``, server/ingest/sessions.py) is wired in server/app.py,
which wraps it with the ticket verification of the JSON API wing.
"""

from __future__ import annotations

from starlette.routing import Route

from server.ingest import feedback, minidump, security, sentry, symbols, symbols_v2

ROUTES = [
    Route("/api/{project}/minidump/", minidump.minidump_endpoint, methods=["POST"]),
    Route("/submit", minidump.submit_endpoint, methods=["POST"]),
    Route("/api/{project}/envelope/", sentry.envelope_endpoint, methods=["POST"]),
    Route("/api/{project}/store/", sentry.store_endpoint, methods=["POST"]),
    Route("/api/{project}/feedback/", feedback.feedback_endpoint, methods=["POST"]),
    Route("/api/{project}/security/", security.security_endpoint, methods=["POST"]),
    Route("/__broken__", sentry.broken_endpoint, methods=["GET"]),
    Route("/api/{project}/symbols/", symbols.upload_endpoint, methods=["POST"]),
    # Breakpad's sym-upload-v2 (symupload -p sym-upload-v2 -k <token> FILE http://HOST/api/<project>/symbols)
    Route("/api/{project}/symbols/v1/symbols/{debug_file}/{debug_id}", symbols_v2.check_status_endpoint,
          methods=["GET"]),
    Route("/api/{project}/symbols/v1/uploads:create", symbols_v2.create_endpoint, methods=["POST"]),
    Route("/api/{project}/symbols/v1/uploads/{upload}", symbols_v2.upload_endpoint, methods=["PUT", "POST"]),
]
