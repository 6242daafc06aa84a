"""symbol_files.last_used_at (crashd symbols prune)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 17:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('symbol_files') as batch:
        batch.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('symbol_files') as batch:
        batch.drop_column('last_used_at')
