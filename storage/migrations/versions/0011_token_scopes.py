"""api_tokens uploader role scoped to a project

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 15:10:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the issue-11 work owning this revision


def downgrade() -> None:
    pass
