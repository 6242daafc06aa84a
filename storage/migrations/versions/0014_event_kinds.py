"""kinds of events: crashes.kind and crashes.level, crash_groups.kind (issue 13)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00

Every row stored before this migration came from the crash paths it was written for: its kind
is 'crash' (the server default fills it); its level is unknown (NULL).
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crashes') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                   server_default='crash'))
        batch.add_column(sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch.create_index(batch.f('ix_crashes_kind'), ['kind'], unique=False)
    with op.batch_alter_table('crash_groups') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                   server_default='crash'))


def downgrade() -> None:
    with op.batch_alter_table('crash_groups') as batch:
        batch.drop_column('kind')
    with op.batch_alter_table('crashes') as batch:
        batch.drop_index(batch.f('ix_crashes_kind'))
        batch.drop_column('level')
        batch.drop_column('kind')
