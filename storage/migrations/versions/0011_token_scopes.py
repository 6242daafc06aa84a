"""api_tokens uploader role scoped to a project; one symbol store per project

symbol_files.project_id now names the store a file is in (None: the shared one). Files
uploaded before were all written to the shared store, whatever key uploaded them. The same
content may be in several stores, so a row is unique by path and content.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 15:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An ``uploader`` token may upload symbols to this one project only (None: any other role).
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('project_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_api_tokens_project_id', 'projects', ['project_id'], ['id'])
    op.execute("UPDATE symbol_files SET project_id = NULL WHERE path NOT LIKE '.projects/%'")
    with op.batch_alter_table('symbol_files') as batch:
        batch.drop_constraint('uq_symbol_file_content', type_='unique')
        batch.create_unique_constraint('uq_symbol_file_path_content', ['path', 'sha256'])


def downgrade() -> None:
    op.execute("DELETE FROM symbol_files WHERE path LIKE '.projects/%'")  # stores the older code never reads
    with op.batch_alter_table('symbol_files') as batch:
        batch.drop_constraint('uq_symbol_file_path_content', type_='unique')
        batch.create_unique_constraint('uq_symbol_file_content', ['debug_file', 'debug_id', 'sha256'])
    op.execute("DELETE FROM api_tokens WHERE role = 'uploader'")  # the older code knows no such role
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_constraint('fk_api_tokens_project_id', type_='foreignkey')
        batch.drop_column('project_id')
