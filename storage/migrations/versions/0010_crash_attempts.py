"""crashes.attempts and next attempt time (retries of infrastructure failures)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crashes') as batch:
        batch.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('retry_after', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crashes') as batch:
        batch.drop_column('retry_after')
        batch.drop_column('attempts')
