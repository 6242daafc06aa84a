"""releases: builds deployed to an environment, with their commits

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 18:55:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('environment', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('deployed_at', TS, nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('commits', sa.JSON(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('patch_notes_sent_at', TS, nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'version', 'environment', name='uq_release')
    )
    with op.batch_alter_table('releases') as batch:
        batch.create_index(batch.f('ix_releases_project_id'), ['project_id'], unique=False)
        batch.create_index(batch.f('ix_releases_version'), ['version'], unique=False)
        batch.create_index(batch.f('ix_releases_deployed_at'), ['deployed_at'], unique=False)


def downgrade() -> None:
    op.drop_table('releases')
