"""feedback table; a hang's duration and thread on crashes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 18:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('feedback',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('text_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('tester_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('build', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('crash_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('received_at', TS, nullable=False),
    sa.Column('attachments', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['group_id'], ['crash_groups.id'], ),
    sa.ForeignKeyConstraint(['crash_id'], ['crashes.crash_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('feedback') as batch:
        batch.create_index('ix_feedback_group_id_received_at', ['group_id', 'received_at'], unique=False)
        batch.create_index('ix_feedback_project_id_received_at', ['project_id', 'received_at'], unique=False)
        batch.create_index(batch.f('ix_feedback_category'), ['category'], unique=False)
        batch.create_index(batch.f('ix_feedback_tester_id'), ['tester_id'], unique=False)
        batch.create_index(batch.f('ix_feedback_build'), ['build'], unique=False)
        batch.create_index(batch.f('ix_feedback_crash_id'), ['crash_id'], unique=False)
        batch.create_index(batch.f('ix_feedback_event_id'), ['event_id'], unique=False)
    with op.batch_alter_table('crashes') as batch:
        batch.add_column(sa.Column('hang_seconds', sa.Float(), nullable=True))
        batch.add_column(sa.Column('hang_thread', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crashes') as batch:
        batch.drop_column('hang_thread')
        batch.drop_column('hang_seconds')
    op.drop_table('feedback')
