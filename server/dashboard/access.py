"""Who may see and who may change, for every dashboard page.

- ``page(handler)``: GET pages. Without a signed-in user (server/auth.principal is None) the
  answer is ``303 /login?next=<path>``; otherwise ``handler(request, state, who)``.
- ``action(handler)``: POST forms (ticket actions, reprocess). Not signed in: a redirect
  to ``/login?next=/``; a missing or wrong ``csrf_token`` field: 403; a viewer: 403; otherwise
  ``handler(request, state, who, form)``.
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
from server.dashboard import pages
from server.state import ServerState, state_of
from storage import queries

PageHandler = Callable[[Request, ServerState, auth.Principal], Awaitable[Response]]
ActionHandler = Callable[[Request, ServerState, auth.Principal, FormData], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


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
        who = await run_in_threadpool(auth.principal, request, state)
        if who is None:
            return login_redirect(request)
        return await handler(request, state, who)
    endpoint.__doc__ = handler.__doc__
    return endpoint


def action(handler: ActionHandler) -> Endpoint:
    """Wrap a POST form: signed in, a valid CSRF token, and an admin."""
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        who = await run_in_threadpool(auth.principal, request, state)
        if who is None:
            return login_redirect(request)
        form = await request.form()
        submitted = form.get("csrf_token")
        if not isinstance(submitted, str) or not auth.check_csrf(request, submitted):
            return problem(request, who, 403, "Forbidden", "The form expired or did not come from this site; "
                                                           "reload the page and try again.")
        if not who.is_admin:
            return problem(request, who, 403, "Forbidden", "Only admins can change tickets and reprocess crashes.")
        return await handler(request, state, who, form)
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def project_filter(state: ServerState, params: Mapping[str, str]) -> tuple[Project | None, list[Project]]:
    """(the ``?project=`` project (id or name) or None, every project for the picker)."""
    projects = await run_in_threadpool(queries.list_projects, state.ctx.engine)
    ref = params.get("project") or ""
    chosen = next((p for p in projects if ref in (str(p.id), p.name)), None) if ref else None
    return chosen, projects
