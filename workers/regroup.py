"""Merging and unmerging groups by hand (the API, the dashboard and ``crashd group``): the
moves of storage/regroup.py, then the threshold rules on the groups that changed, then the
tracker notifications. A merged group may pass a threshold that neither half passed; a group
split off by an unmerge is a group of its own and may earn its own ticket."""

from __future__ import annotations

from typing import Callable, Sequence

from storage import regroup
from storage.regroup import Regrouped
from workers.context import WorkerContext
from workers.queue import JobQueue
from workers.triage_jobs import evaluate_group, notify

Work = Callable[[WorkerContext, "JobQueue | None"], Regrouped]  # a merge or an unmerge, for the CLI


def merge(ctx: WorkerContext, queue: JobQueue | None, *, group_id: int, into: int, actor: str,
          project_id: int | None = None) -> Regrouped:
    """Merge group group_id into group into (storage/regroup.merge_groups), then check the
    rules on the merged group and notify. Raises GroupNotFound or RegroupError."""
    done = regroup.merge_groups(ctx.engine, settings=ctx.settings, group_id=group_id, into=into, actor=actor,
                                project_id=project_id)
    changes = done.changes + evaluate_group(ctx, into)
    notify(queue, changes)
    return Regrouped(done.crashes_moved, done.groups, changes)


def unmerge(ctx: WorkerContext, queue: JobQueue | None, *, group_id: int, actor: str,
            signatures: Sequence[str] = (), crash_ids: Sequence[str] = (),
            project_id: int | None = None) -> Regrouped:
    """Unmerge signatures (or the signatures of crash_ids) from group group_id, then check
    the rules on each group that got crashes back and notify. Raises GroupNotFound or
    RegroupError."""
    wanted = list(signatures)
    if crash_ids:
        wanted += regroup.signatures_of_crashes(ctx.engine, group_id=group_id, crash_ids=crash_ids)
    done = regroup.unmerge_signatures(ctx.engine, group_id=group_id, signatures=wanted, actor=actor,
                                      project_id=project_id)
    changes = [change for home in sorted(set(done.groups.values())) for change in evaluate_group(ctx, home)]
    notify(queue, changes)
    return Regrouped(done.crashes_moved, done.groups, changes)
