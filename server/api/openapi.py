"""``GET /api/openapi.json``: an OpenAPI 3.1 document of crashd's HTTP API, built from the
application's own route list plus DESCRIBED (summary, parameters, response shape per
route), so a route added to server/app.py shows up at once. A route DESCRIBED does not
know is still listed, marked ``x-undocumented`` (tests/test_openapi.py fails on it).

The shapes are kept short: the fields a client reads, each documented in docs/*.md.
The document is public: it holds no data, only what the API looks like.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.api.openapi_shapes import DESCRIBED, SCHEMAS

PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
CONVERTOR_TYPES = {"int": "integer", "float": "number"}
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
INFO = {"title": "crashd", "version": "0.1.0",
        "description": "Crash-report ingestion and triage. Admin and API calls take "
                       "`Authorization: Bearer <token>`; crash clients an ingest key."}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The admin token (or an API token)"},
    "ingestKey": {"type": "apiKey", "in": "query", "name": "sentry_key",
                  "description": "The project's ingest key; also `?key=` or `X-Sentry-Auth: Sentry sentry_key=...`"},
}


def api_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route whose path is under /api/ or that DESCRIBED names
    (the upload and health endpoints), in route order; HTML pages and mounts are left out."""
    found = []
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or {"GET"}) - SKIPPED_METHODS):
            if route.path.startswith("/api/") or (method, route.path) in DESCRIBED:
                found.append((method, route.path))
    return found


def openapi_path(path: str) -> tuple[str, list[dict[str, Any]]]:
    """A Starlette path (``/api/groups/{group_id:int}``) as OpenAPI writes it, and its path
    parameters."""
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": CONVERTOR_TYPES.get(kind or "", "string")}}
              for name, kind in PATH_PARAM.findall(path)]
    return PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path), params


def operation(method: str, path: str) -> dict[str, Any]:
    """The operation object of one route (DESCRIBED's entry, or an undocumented stub)."""
    entry = DESCRIBED.get((method, path))
    template, path_params = openapi_path(path)
    if entry is None:
        return {"summary": f"{method} {template}", "x-undocumented": True, "parameters": path_params,
                "responses": {"200": {"description": "not described yet"}}}
    op: dict[str, Any] = {"summary": entry["summary"], "operationId": entry["id"],
                          "parameters": path_params + [_query(p) for p in entry.get("query", [])],
                          "responses": _responses(entry)}
    if entry.get("auth") == "ingest":
        op["security"] = [{"ingestKey": []}, {"bearer": []}]
    elif entry.get("auth") == "key":  # crash clients only: a bearer token is no ingest key
        op["security"] = [{"ingestKey": []}]
    elif entry.get("auth") == "none":
        op["security"] = []
    if "body" in entry:
        op["requestBody"] = {"required": True, "content": {entry["body"][0]: {"schema": entry["body"][1]}}}
    if "description" in entry:
        op["description"] = entry["description"]
    return op


def _query(param: tuple[str, str | dict[str, Any], str]) -> dict[str, Any]:
    """A query parameter: kind is a JSON type name, or a schema (bounds, enum) in full."""
    name, kind, text = param
    return {"name": name, "in": "query", "required": text.startswith("required"),
            "schema": {"type": kind} if isinstance(kind, str) else kind, "description": text}


def _responses(entry: dict[str, Any]) -> dict[str, Any]:
    ok = entry.get("ok", {"description": "OK"})
    out: dict[str, Any] = {"200": ok}
    error = entry.get("error_content", {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}})
    for status in entry.get("errors", ()):
        out[str(status)] = {"description": ERROR_TEXT[status], "content": error}
    return out


ERROR_TEXT = {400: "bad request: {\"detail\": why}", 401: "no or wrong credentials", 403: "admin role required",
              404: "not found", 409: "refused: {\"detail\": why}", 410: "the blob is gone from the store",
              413: "upload too large", 429: "too many uploads", 503: "storage unavailable; retry later"}


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of routes."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in api_routes(routes):
        template, _ = openapi_path(path)
        paths.setdefault(template, {})[method.lower()] = operation(method, path)
    return {"openapi": "3.1.0", "info": INFO, "paths": paths, "security": [{"bearer": []}],
            "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": SCHEMAS}}


async def openapi_endpoint(request: Request) -> Response:
    """GET /api/openapi.json: the document of this application's routes."""
    return JSONResponse(document(request.app.routes))

