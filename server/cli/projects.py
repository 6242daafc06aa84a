"""``crashd project create|list|limit``: projects, their ingest keys and upload URLs."""

from __future__ import annotations

import argparse
import json
import sys

from schemas.settings import Settings
from schemas.tables import Project
from server.cli.context import command_engine
from storage import queries

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
SERVER_URL_FILE = "server-url"  # in the data folder: the address `crashd serve` last listened on


def record_server_url(settings: Settings, url: str) -> None:
    """Keep the address `crashd serve` listens on for the CLI's printed URLs (`make run PORT=...`);
    kept after shutdown: the next start is most likely on the same port."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.data_dir / (SERVER_URL_FILE + ".tmp")
    tmp.write_text(url + "\n")
    tmp.replace(settings.data_dir / SERVER_URL_FILE)


def cli_base_url(settings: Settings, given: str | None) -> str:
    """The server URL for printed upload URLs: --base-url when given, else the address the
    last `crashd serve` on this data folder listened on, else the default; CRASHD_PUBLIC_URL
    wins over all of them (project_urls)."""
    if given:
        return given
    try:
        recorded = (settings.data_dir / SERVER_URL_FILE).read_text().strip()
    except OSError:
        recorded = ""
    return recorded or DEFAULT_BASE_URL


def project_urls(settings: Settings, project: Project, base_url: str) -> dict[str, str | int | None]:
    """What a client needs to upload to project: its key and both endpoint URLs."""
    base = (settings.public_url or base_url).rstrip("/")
    scheme, _, host = base.partition("://")
    return {
        "project": project.name,
        "project_id": project.id,
        "ingest_key": project.ingest_key,
        "dsn": f"{scheme}://{project.ingest_key}@{host}/{project.id}",
        "minidump_url": f"{base}/api/{project.id}/minidump/?sentry_key={project.ingest_key}",
        "submit_url": f"{base}/submit?key={project.ingest_key}",
    }


def cmd_project_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a project and print its ingest key and upload URLs."""
    engine = command_engine(settings)
    try:
        project = queries.create_project(engine, name=args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    urls = project_urls(settings, project, cli_base_url(settings, args.base_url))
    if args.json:
        print(json.dumps(urls))
    else:
        for key, value in urls.items():
            print(f"{key}: {value}")
    return 0


def cmd_project_list(settings: Settings, args: argparse.Namespace) -> int:
    """List projects with their keys and URLs (JSON lines with --json)."""
    engine = command_engine(settings)
    for project in queries.list_projects(engine):
        urls = project_urls(settings, project, cli_base_url(settings, args.base_url))
        print(json.dumps(urls) if args.json else f"{project.id}\t{project.name}\t{project.ingest_key}\t{urls['dsn']}")
    return 0


def cmd_project_limit(settings: Settings, args: argparse.Namespace) -> int:
    """Set a project's own rate limit: N reports a minute, 0 for none, `default` for the
    server's CRASHD_RATE_LIMIT_PER_MINUTE. Servers see it within ProjectKeys' 10 s."""
    if args.per_minute == "default":
        limit = None
    elif args.per_minute.isdigit():
        limit = int(args.per_minute)
    else:
        print(f"error: {args.per_minute!r}: give a number of reports a minute, 0 or `default`", file=sys.stderr)
        return 2
    engine = command_engine(settings)
    project = queries.set_rate_limit(engine, ref=args.project, per_minute=limit)
    if project is None:
        print(f"error: no project {args.project!r}", file=sys.stderr)
        return 1
    shown = {None: f"the server's default ({settings.rate_limit_per_minute or 'none'})", 0: "none"}
    print(f"project {project.name!r}: rate limit {shown.get(limit, f'{limit} reports a minute')}")
    return 0
