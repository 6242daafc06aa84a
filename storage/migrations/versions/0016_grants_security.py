"""per-project roles (project_grants); security reports and restricted tickets

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 18:20:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('project_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('security', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'user_name', name='uq_grant_project_user'),
    sa.UniqueConstraint('project_id', 'token_id', name='uq_grant_project_token')
    )
    with op.batch_alter_table('project_grants') as batch:
        batch.create_index(batch.f('ix_project_grants_project_id'), ['project_id'], unique=False)
        batch.create_index(batch.f('ix_project_grants_user_name'), ['user_name'], unique=False)
        batch.create_index(batch.f('ix_project_grants_token_id'), ['token_id'], unique=False)
    op.create_table('security_reports',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('summary', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('details', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tester_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('build', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('received_at', TS, nullable=False),
    sa.Column('attachments', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('security_reports') as batch:
        batch.create_index(batch.f('ix_security_reports_project_id'), ['project_id'], unique=False)
        batch.create_index(batch.f('ix_security_reports_ticket_id'), ['ticket_id'], unique=False)
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('restricted', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index(batch.f('ix_tickets_restricted'), ['restricted'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.drop_index(batch.f('ix_tickets_restricted'))
        batch.drop_column('restricted')
    op.drop_table('security_reports')
    op.drop_table('project_grants')
