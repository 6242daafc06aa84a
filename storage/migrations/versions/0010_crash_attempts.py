"""crashes.attempts and next attempt time (retries of infrastructure failures)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:10:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the issue-11 work owning this revision


def downgrade() -> None:
    pass
