"""regrouping: merges as rules, crash moves between groups, tickets merged into others

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 17:40:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('group_redirects',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['group_id'], ['crash_groups.id'], ),
    sa.PrimaryKeyConstraint('project_id', 'signature')
    )
    with op.batch_alter_table('group_redirects') as batch:
        batch.create_index(batch.f('ix_group_redirects_group_id'), ['group_id'], unique=False)
    op.create_table('group_moves',
    sa.Column('from_group_id', sa.Integer(), nullable=False),
    sa.Column('to_group_id', sa.Integer(), nullable=False),
    sa.Column('crash_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['from_group_id'], ['crash_groups.id'], ),
    sa.ForeignKeyConstraint(['to_group_id'], ['crash_groups.id'], ),
    sa.PrimaryKeyConstraint('from_group_id', 'to_group_id')
    )
    with op.batch_alter_table('crash_groups') as batch:
        batch.add_column(sa.Column('merged_into', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_crash_groups_merged_into', 'crash_groups', ['merged_into'], ['id'])
    with op.batch_alter_table('tickets') as batch:
        batch.alter_column('group_id', existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column('merged_into', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_tickets_merged_into', 'tickets', ['merged_into'], ['id'])


def downgrade() -> None:
    # Merged tickets held no group: the older code needs one, so they go (their events with them).
    op.execute("DELETE FROM notifications WHERE ticket_id IN (SELECT id FROM tickets WHERE group_id IS NULL)")
    op.execute("DELETE FROM ticket_events WHERE ticket_id IN (SELECT id FROM tickets WHERE group_id IS NULL)")
    op.execute("DELETE FROM tickets WHERE group_id IS NULL")
    with op.batch_alter_table('tickets') as batch:
        batch.drop_constraint('fk_tickets_merged_into', type_='foreignkey')
        batch.drop_column('merged_into')
        batch.alter_column('group_id', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('crash_groups') as batch:
        batch.drop_constraint('fk_crash_groups_merged_into', type_='foreignkey')
        batch.drop_column('merged_into')
    op.drop_table('group_moves')
    with op.batch_alter_table('group_redirects') as batch:
        batch.drop_index(batch.f('ix_group_redirects_group_id'))
    op.drop_table('group_redirects')
