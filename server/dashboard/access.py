"""Who may see and who may change, for every dashboard page.

- ``page(handler)``: GET pages. Without a signed-in user (server/auth.principal is None) the
  answer is ``303 /login?next=<path>``; otherwise ``handler(request, state, who)``.
- ``action(handler)``: POST forms (ticket actions, merge, reprocess). Not signed in: a redirect
  to ``/login?next=/``; a missing or wrong ``csrf_token`` field: 403; a viewer everywhere: 403;
  otherwise ``handler(request, state, who, form)``, which calls ``refused(..., "triage")``
  with its object's project.
- ``refused(request, who, project_id, action, what)``: the 404 page for an object of a
  project who may not read (as if it did not exist: docs/auth.md), the 403 page where who
  reads but may not do action; None when who may go on.
- ``project_filter``: the ``?project=`` picker, kept to who's projects.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Mapping
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from schemas.tables import Project
from server import auth
from server.access_rules import Action, may, may_anywhere, projects_visible
from server.dashboard import pages
from server.state import ServerState, state_of
from storage import queries
from storage.scope import ProjectScope

PageHandler = Callable[[Request, ServerState, auth.Principal], Awaitable[Response]]
ActionHandler = Callable[[Request, ServerState, auth.Principal, FormData], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
FORBIDDEN = "Only admins and the project's triagers can change tickets and reprocess crashes."


def login_redirect(request: Request) -> Response:
    """``303 /login?next=<this path and query>`` (``next=/`` for a form post: coming back to
    it after signing in would be a GET the route does not take)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method == "POST":
        target = "/"
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def problem(request: Request, who: auth.Principal | None, status: int, title: str, detail: str,
            back: str | None = None) -> Response:
    """An error page (403, 404, 400) in the dashboard's layout, linking back to ``back``."""
    return pages.render(request, "problem.html", {"user": who, "title": title, "detail": detail, "back": back},
                        status)


def page(handler: PageHandler) -> Endpoint:
    """Wrap a GET page: signed-in users only."""
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        who = await run_in_threadpool(auth.caller, request, state)
        if who is None:
            return login_redirect(request)
        return await handler(request, state, who)
    endpoint.__doc__ = handler.__doc__
    return endpoint


def action(handler: ActionHandler) -> Endpoint:
    """Wrap a POST form: signed in, a valid CSRF token, and a triager or admin somewhere."""
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        who = await run_in_threadpool(auth.caller, request, state)
        if who is None:
            return login_redirect(request)
        form = await request.form()
        submitted = form.get("csrf_token")
        if not isinstance(submitted, str) or not auth.check_csrf(request, submitted):
            return problem(request, who, 403, "Forbidden", "The form expired or did not come from this site; "
                                                           "reload the page and try again.")
        if not may_anywhere(who, "triage"):
            return problem(request, who, 403, "Forbidden", FORBIDDEN)
        return await handler(request, state, who, form)
    endpoint.__doc__ = handler.__doc__
    return endpoint


def refused(request: Request, who: auth.Principal, project_id: int | None, action: Action,
            what: str) -> Response | None:
    """None when who may do action in the project of the object (``what``: "There is no
    <what>."); else the 404 page when who may not read the project (the object's existence
    is not confirmed), the 403 page when it only reads."""
    if not may(who, project_id, "read"):
        return problem(request, who, 404, "Not found", f"There is no {what}.")
    if not may(who, project_id, action):
        return problem(request, who, 403, "Forbidden", FORBIDDEN)
    return None


async def project_filter(state: ServerState, params: Mapping[str, str],
                         who: auth.Principal) -> tuple[Project | None, list[Project], ProjectScope]:
    """(the ``?project=`` project (id or name) or None, the projects who may read for the
    picker, the scope of the page's queries: the chosen project's id, else who's projects).
    A project who may not read is left out and cannot be chosen, like an unknown one."""
    visible = projects_visible(who)
    projects = [p for p in await run_in_threadpool(queries.list_projects, state.ctx.engine)
                if visible is None or p.id in visible]
    ref = params.get("project") or ""
    chosen = next((p for p in projects if ref in (str(p.id), p.name)), None) if ref else None
    return chosen, projects, chosen.id if chosen is not None else visible
