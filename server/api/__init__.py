"""The JSON API wing of server/: reads of crashes, groups, builds, tickets, the triage board
and symbols, the ticket actions, health and version, and the OpenAPI document. routes.py
lists its routes for server/app.py; params.py parses the shared query parameters; access.py
checks who may call an endpoint. An endpoint refuses by raising HTTPException, which
server/app.http_error renders as ``{"detail": ...}``.

Imports nothing of its modules, so that importing one module loads only what it needs.
"""
