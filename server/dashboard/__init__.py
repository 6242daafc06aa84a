"""The dashboard (issue 6): server-rendered pages for people, next to the JSON API.

Pages live at ``/`` (crash groups), ``/groups/<id>``, ``/crashes/<crash_id>``, ``/triage``,
``/builds`` and ``/symbols``; docs/dashboard.md describes them. routes.py lists their routes,
login.py signs people in and out, pages.py renders the templates (server/templates,
server/static). This package imports none of its modules, so each may import the others.
"""
