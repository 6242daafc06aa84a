"""Rendering of the dashboard's HTML pages: one Jinja2 environment with autoescaping on, and
``render`` which adds what every page needs (the signed-in user, the CSRF token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))  # autoescape is on for .html


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """The template ``name`` rendered with context plus ``user`` (a Principal or None) and
    ``csrf_token`` (for every form)."""
    from server import auth

    state = request.app.state.crashd
    page = dict(context or {})
    page.setdefault("user", auth.principal(request, state))
    page.setdefault("csrf_token", auth.csrf_token(request) if hasattr(auth, "csrf_token") else "")
    return templates.TemplateResponse(request, name, page, status_code=status_code)
