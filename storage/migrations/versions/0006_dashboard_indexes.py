"""indexes for the dashboard pages (issue 6)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 14:30:00

Chosen with EXPLAIN ANALYZE on 100,000 crashes in 2,000 groups (bench/dashboard.py,
docs/benchmarks.md):

- crashes (group_id, received_at): a page's sparklines (crashes per day of 50 groups over
  14 days), a group's latest crashes and its representative crash, without sorting every
  crash of a big group;
- crashes (project_id, build, received_at): crash reports per build and each build's first
  crash (the builds page's table, storage/sessions.crashes_per_build / build_first_seen) from
  the index alone instead of a scan of every crash row (60 ms -> 20 ms at 100,000 crashes);
- group_builds (build, group_id): the builds comparison and the groups table's build filter
  find a build's groups (the primary key starts with group_id);
- sessions (project_id, build, status): sessions and crashed sessions per build, counted
  from the index alone;
- crash_missing_symbols (debug_file, debug_id): missing symbols ranked by crashes;
- symbol_files (uploaded_at): the newest uploads first.
Plain CREATE INDEX on both SQLite and PostgreSQL.
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEXES = (
    ('ix_crashes_group_id_received_at', 'crashes', ['group_id', 'received_at']),
    ('ix_crashes_project_id_build_received_at', 'crashes', ['project_id', 'build', 'received_at']),
    ('ix_group_builds_build_group_id', 'group_builds', ['build', 'group_id']),
    ('ix_sessions_project_id_build_status', 'sessions', ['project_id', 'build', 'status']),
    ('ix_crash_missing_symbols_module', 'crash_missing_symbols', ['debug_file', 'debug_id']),
    ('ix_symbol_files_uploaded_at', 'symbol_files', ['uploaded_at']),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
