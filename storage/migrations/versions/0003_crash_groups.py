"""crash groups: signatures, components, per-build/tester/platform counts, missing symbols

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:15:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('crash_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('signature_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('component', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('reason_text', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('first_seen', TS, nullable=False),
    sa.Column('last_seen', TS, nullable=False),
    sa.Column('crash_count', sa.Integer(), nullable=False),
    sa.Column('tester_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'signature', name='uq_group_signature')
    )
    with op.batch_alter_table('crash_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crash_groups_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crash_groups_component'), ['component'], unique=False)
        batch_op.create_index(batch_op.f('ix_crash_groups_last_seen'), ['last_seen'], unique=False)
    for name, key, extra in (
        ('group_testers', sa.Column('tester_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False), True),
        ('group_builds', sa.Column('build', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False), True),
        ('group_platforms', sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False), False),
    ):
        columns = [sa.Column('group_id', sa.Integer(), nullable=False), key,
                   sa.Column('crash_count', sa.Integer(), nullable=False)]
        if extra:
            columns += [sa.Column('first_seen', TS, nullable=False), sa.Column('last_seen', TS, nullable=False)]
        op.create_table(name, *columns,
                        sa.ForeignKeyConstraint(['group_id'], ['crash_groups.id'], ),
                        sa.PrimaryKeyConstraint('group_id', key.name))
    op.create_table('crash_missing_symbols',
    sa.Column('crash_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('debug_file', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('debug_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['crash_id'], ['crashes.crash_id'], ),
    sa.PrimaryKeyConstraint('crash_id', 'debug_file', 'debug_id')
    )
    with op.batch_alter_table('crash_missing_symbols', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crash_missing_symbols_debug_id'), ['debug_id'], unique=False)
    with op.batch_alter_table('crashes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
        batch_op.add_column(sa.Column('signature_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('component', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True))
        batch_op.add_column(sa.Column('reason_text', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True))
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_crashes_group_id'), ['group_id'], unique=False)
        batch_op.create_foreign_key('fk_crashes_group_id', 'crash_groups', ['group_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('crashes', schema=None) as batch_op:
        batch_op.drop_constraint('fk_crashes_group_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_crashes_group_id'))
        for column in ('group_id', 'platform', 'reason_text', 'component', 'signature_version', 'signature'):
            batch_op.drop_column(column)
    op.drop_table('crash_missing_symbols')
    for name in ('group_platforms', 'group_builds', 'group_testers'):
        op.drop_table(name)
    op.drop_table('crash_groups')
