"""``crashd group merge A B`` and ``crashd group unmerge B --signature S``: merging groups by
hand from a shell, as POST /api/groups/<id>/merge and /unmerge do (workers/regroup.py).
Ticket notifications are enqueued on RQ when CRASHD_REDIS_URL is set, else sent here."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from schemas.settings import Settings
from server.cli.context import command_context
from storage.regroup import GroupNotFound, Regrouped, RegroupError
from workers import regroup
from workers.queue import InProcessJobQueue, make_queue


def cmd_group_merge(settings: Settings, args: argparse.Namespace) -> int:
    """crashd group merge SOURCE INTO [--by NAME]: SOURCE's crashes and signature go into INTO."""
    return _run(settings, args, lambda ctx, queue: regroup.merge(
        ctx, queue, group_id=args.source, into=args.into, actor=f"user:{args.by}"))


def cmd_group_unmerge(settings: Settings, args: argparse.Namespace) -> int:
    """crashd group unmerge GROUP (--signature S ... | --crash ID ...): back to their own groups."""
    return _run(settings, args, lambda ctx, queue: regroup.unmerge(
        ctx, queue, group_id=args.group, signatures=args.signature or [], crash_ids=args.crash or [],
        actor=f"user:{args.by}"))


def _run(settings: Settings, args: argparse.Namespace, work: regroup.Work) -> int:
    ctx = command_context(settings)
    queue = make_queue(settings)
    try:
        done: Regrouped = work(ctx, queue)
    except (GroupNotFound, RegroupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if isinstance(queue, InProcessJobQueue):  # no Redis: the notifications are sent here
            queue.join()
        queue.close()
    changes = [f"ticket {c.ticket_id} {c.action}" for c in done.changes]
    if args.json:
        print(json.dumps({"crashes_moved": done.crashes_moved, "groups": done.groups, "ticket_changes": changes}))
    else:
        for signature, group_id in done.groups.items():
            print(f"{signature} -> group {group_id}")
        print(f"{done.crashes_moved} crashes moved" + (f"; {', '.join(changes)}" if changes else ""))
    return 0


def add_group_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """crashd group merge, crashd group unmerge (docs/grouping.md)."""
    group = sub.add_parser("group", help="merge and unmerge crash groups").add_subparsers(dest="action", required=True)
    merge = group.add_parser("merge", help="merge group SOURCE into group INTO (remembered across reprocessing)")
    merge.add_argument("source", type=int, metavar="SOURCE")
    merge.add_argument("into", type=int, metavar="INTO")
    merge.set_defaults(func=cmd_group_merge)
    unmerge = group.add_parser("unmerge", help="give merged signatures their own groups again")
    unmerge.add_argument("group", type=int, metavar="GROUP")
    unmerge.add_argument("--signature", action="append", metavar="S", help="a signature merged into GROUP (repeatable)")
    unmerge.add_argument("--crash", action="append", metavar="ID", help="a crash of GROUP: unmerge its signature")
    unmerge.set_defaults(func=cmd_group_unmerge)
    for command in (merge, unmerge):
        command.add_argument("--by", default=getpass.getuser(), help="who did it, for the ticket history")
        command.add_argument("--json", action="store_true")
