"""GET /api/openapi.json (server/api/openapi.py): an OpenAPI 3.1 document describing every /api
route of server/app.py, built from the route list itself."""

from __future__ import annotations

import json
from typing import Any, Iterator

from starlette.routing import Route

from server import app as crashd_app
from server.api import openapi
from server.api.openapi_shapes import DESCRIBED

from conftest import Crashd


def api_routes() -> list[tuple[str, str]]:
    """(method, path) of every /api route of the application, HEAD left out."""
    return [(method, route.path) for route in crashd_app.ROUTES if isinstance(route, Route)
            and route.path.startswith("/api/") for method in sorted((route.methods or set()) - {"HEAD"})]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_api_route_is_described() -> None:
    document = openapi.document(crashd_app.ROUTES)
    routes = api_routes()
    assert ("GET", "/api/groups") in routes and ("GET", "/api/openapi.json") in routes
    undescribed = [route for route in routes if route not in DESCRIBED]
    assert undescribed == [], f"add these routes to server/openapi_shapes.DESCRIBED: {undescribed}"
    for method, path in routes:
        template, _ = openapi.openapi_path(path)
        op = document["paths"][template][method.lower()]
        assert op["summary"] and "200" in op["responses"] and "x-undocumented" not in op, (method, path)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    # what is described exists: no entry for a route the application does not have
    existing = {(m, r.path) for r in crashd_app.ROUTES if isinstance(r, Route) for m in (r.methods or ())}
    assert [key for key in DESCRIBED if key not in existing] == []


def test_document_shape_and_references() -> None:
    document = openapi.document(crashd_app.ROUTES)
    assert document["openapi"] == "3.1.0" and document["info"]["title"] == "crashd"
    schemas = document["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs(document))
    group = document["paths"]["/api/groups/{group_id}"]["get"]
    assert {"name": "group_id", "in": "path", "required": True, "schema": {"type": "integer"}} in group["parameters"]
    assert group["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GroupPage"}
    listing = document["paths"]["/api/groups"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"project", "component", "build", "platform", "status",
                                                          "since", "sort", "order", "limit", "offset", "days"}
    assert document["paths"]["/api/{project}/minidump/"]["post"]["security"][0] == {"ingestKey": []}
    assert "/" not in document["paths"] and "/login" not in document["paths"]  # HTML pages are not the API
    json.dumps(document)  # plain JSON all the way down


def test_undescribed_route_is_listed_and_marked() -> None:
    async def nothing(request):
        raise AssertionError

    document = openapi.document([*crashd_app.ROUTES, Route("/api/new/{thing_id:int}", nothing, methods=["DELETE"])])
    op = document["paths"]["/api/new/{thing_id}"]["delete"]
    assert op["x-undocumented"] is True and op["parameters"][0]["schema"] == {"type": "integer"}


def test_served_without_credentials(crashd: Crashd) -> None:
    response = crashd.client.get("/api/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    served = response.json()
    assert served == json.loads(json.dumps(openapi.document(crashd.client.app.routes)))
    assert "/api/triage" in served["paths"] and "/api/symbols" in served["paths"]


def test_document_says_what_the_server_checks() -> None:
    """Found by fuzzing the running app against its document (schemathesis): crash uploads
    take an ingest key only, /submit refuses as Breakpad text, dumps are application/x-dmp,
    and the query bounds the server enforces are in the schemas, not only in the text."""
    paths = openapi.document(crashd_app.ROUTES)["paths"]
    for path in ("/api/{project}/minidump/", "/submit", "/api/{project}/envelope/", "/api/{project}/store/",
                 "/api/{project}/sessions/"):
        assert paths[path]["post"]["security"] == [{"ingestKey": []}], path
    assert "security" not in paths["/api/{project}/symbols/"]["post"]  # the document's own: a bearer token
    assert set(paths["/submit"]["post"]["responses"]["400"]["content"]) == {"text/plain"}
    assert set(paths["/api/{project}/minidump/"]["post"]["responses"]["400"]["content"]) == {"application/json"}
    assert set(paths["/api/crashes/{crash_id}/minidump"]["get"]["responses"]["200"]["content"]) == {"application/x-dmp"}
    assert "403" in paths["/api/tickets/{ticket_id}/{action}"]["post"]["responses"]

    def schema(path: str, name: str) -> dict[str, Any]:
        return next(p["schema"] for p in paths[path]["get"]["parameters"] if p["name"] == name)

    assert schema("/api/groups", "limit") == {"type": "integer", "minimum": 1}  # larger is cut to 1000
    assert schema("/api/groups", "offset")["maximum"] == 2**63 - 1
    assert schema("/api/groups", "order")["enum"] == ["asc", "desc"]
    assert schema("/api/groups/{group_id}", "days") == {"type": "integer", "minimum": 1, "maximum": 90}
    assert schema("/api/symbols", "limit") == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert schema("/api/builds", "project") == {"type": "string", "minLength": 1}
    assert schema("/api/groups", "project") == {"type": "string"}
