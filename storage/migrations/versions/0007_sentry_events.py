"""Sentry protocol: events without a minidump (issue 7)

A Sentry event sent without a minidump (an envelope's `event` item, `/store/`) is a crash whose
stack comes from the event's own stack trace: the minidump columns become nullable and
`event_key` points at the event JSON in the blob store.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 14:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crashes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
        batch_op.alter_column('minidump_key', existing_type=sqlmodel.sql.sqltypes.AutoString(length=300),
                              nullable=True)
        batch_op.alter_column('minidump_size', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('minidump_sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
                              nullable=True)


def downgrade() -> None:
    # Event-only crashes have no dump: they cannot survive the NOT NULL columns.
    op.execute("DELETE FROM attachments WHERE crash_id IN (SELECT crash_id FROM crashes WHERE minidump_key IS NULL)")
    op.execute("DELETE FROM crash_missing_symbols WHERE crash_id IN "
               "(SELECT crash_id FROM crashes WHERE minidump_key IS NULL)")
    op.execute("DELETE FROM crashes WHERE minidump_key IS NULL")
    with op.batch_alter_table('crashes', schema=None) as batch_op:
        batch_op.alter_column('minidump_sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
                              nullable=False)
        batch_op.alter_column('minidump_size', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('minidump_key', existing_type=sqlmodel.sql.sqltypes.AutoString(length=300),
                              nullable=False)
        batch_op.drop_column('event_key')
