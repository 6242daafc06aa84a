"""indexes for the dashboard pages (issue 6)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 14:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration


def downgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration
