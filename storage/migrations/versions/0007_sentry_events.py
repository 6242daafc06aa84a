"""Sentry protocol: events without a minidump (issue 7)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 14:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration


def downgrade() -> None:
    pass  # PLACEHOLDER: filled in by the owner of this migration
