"""product views: how often a known contact looked at a product, first and last

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('product_views',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.Column('first_viewed_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_viewed_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_product_views_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_product_views_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_views')),
    sa.UniqueConstraint('contact_id', 'product_id', name=op.f('uq_product_views_contact_id_product_id'))
    )
    with op.batch_alter_table('product_views', schema=None) as batch_op:
        batch_op.create_index('ix_product_views_contact_id_last_viewed_at', ['contact_id', 'last_viewed_at'], unique=False)
        batch_op.create_index('ix_product_views_shop_id', ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('product_views', schema=None) as batch_op:
        batch_op.drop_index('ix_product_views_shop_id')
        batch_op.drop_index('ix_product_views_contact_id_last_viewed_at')

    op.drop_table('product_views')
