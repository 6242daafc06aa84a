"""users and API tokens (sign-in, issue 6)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration


def downgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration
