"""symbol_files: debug files uploaded to the symbol store

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('symbol_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('debug_file', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('debug_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('code_file', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('code_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('os', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('cpu', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('debug_file', 'debug_id', 'sha256', name='uq_symbol_file_content')
    )
    with op.batch_alter_table('symbol_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_symbol_files_debug_id'), ['debug_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_symbol_files_project_id'), ['project_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('symbol_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_symbol_files_project_id'))
        batch_op.drop_index(batch_op.f('ix_symbol_files_debug_id'))

    op.drop_table('symbol_files')
