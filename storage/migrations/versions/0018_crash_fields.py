"""crash_fields and field_values: the searchable values of each crash (docs/search.md)

The rows of crashes processed before this migration are written from what their rows hold
(annotations, signature, platform, component, the summary's OS, CPU and top frames);
``os_version`` and ``cpu_info`` come with their next processing (``crashd reprocess``).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 20:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BATCH = 1000


def upgrade() -> None:
    op.create_table('crash_fields',
    sa.Column('crash_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('field', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('value', sa.String(300).with_variant(sa.String(300, collation='C'), 'postgresql'), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('received_at', TS, nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['crash_id'], ['crashes.crash_id'], ),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('crash_id', 'field', 'value')
    )
    with op.batch_alter_table('crash_fields') as batch:
        batch.create_index('ix_crash_fields_search', ['project_id', 'field', 'value', 'received_at', 'crash_id',
                                                      'group_id'], unique=False)
        batch.create_index('ix_crash_fields_group', ['group_id', 'field', 'received_at', 'crash_id', 'project_id',
                                                     'value'], unique=False)
    with op.batch_alter_table('crashes') as batch:
        batch.create_index('ix_crashes_project_id_received_at', ['project_id', 'received_at', 'crash_id'], unique=False)
    op.create_table('field_values',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('field', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('value', sa.String(300).with_variant(sa.String(300, collation='C'), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('project_id', 'field', 'value')
    )
    _backfill()
    op.execute("INSERT INTO field_values (project_id, field, value) SELECT DISTINCT project_id, field, value"
               " FROM crash_fields")


def _backfill() -> None:
    from storage.search_index import FIELDS, field_rows  # the same extraction new crashes get

    conn = op.get_bind()
    crashes = sa.table('crashes', sa.column('crash_id'), sa.column('project_id'), sa.column('received_at', TS),
                       sa.column('annotations', sa.JSON()), sa.column('processed', sa.JSON()),
                       sa.column('signature'), sa.column('platform'), sa.column('component'), sa.column('status'),
                       sa.column('group_id'), sa.column('build'), sa.column('tester_id'), sa.column('kind'))
    after = ''
    while True:
        rows = conn.execute(sa.select(crashes).where(crashes.c.crash_id > after, crashes.c.status.in_(
            ('processed', 'failed'))).order_by(crashes.c.crash_id).limit(BATCH)).all()
        if not rows:
            return
        values = [v for r in rows for v in field_rows(r._mapping)]
        if values:
            conn.execute(sa.insert(FIELDS), values)
        after = rows[-1].crash_id


def downgrade() -> None:
    with op.batch_alter_table('crashes') as batch:
        batch.drop_index('ix_crashes_project_id_received_at')
    op.drop_table('field_values')
    op.drop_table('crash_fields')
