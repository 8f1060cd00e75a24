"""the import of a shop's past customers and orders, resumable

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('history_imports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('since', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('read', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=True),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('started_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', jobs.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_history_imports_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_history_imports')),
    sa.UniqueConstraint('shop_id', name=op.f('uq_history_imports_shop_id'))
    )


def downgrade() -> None:
    op.drop_table('history_imports')
