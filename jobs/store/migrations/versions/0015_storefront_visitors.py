"""storefront visitors: who a visitor is, and an anonymous visitor's events until then

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('visitors',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('visitor_id', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('linked_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_visitors_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_visitors_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visitors')),
    sa.UniqueConstraint('shop_id', 'visitor_id', name=op.f('uq_visitors_shop_id_visitor_id'))
    )
    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visitors_contact_id'), ['contact_id'], unique=False)

    op.create_table('visitor_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('visitor_id', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_visitor_events_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visitor_events'))
    )
    with op.batch_alter_table('visitor_events', schema=None) as batch_op:
        batch_op.create_index('ix_visitor_events_occurred_at', ['occurred_at'], unique=False)
        batch_op.create_index('ix_visitor_events_shop_id_visitor_id_occurred_at', ['shop_id', 'visitor_id', 'occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visitor_events', schema=None) as batch_op:
        batch_op.drop_index('ix_visitor_events_shop_id_visitor_id_occurred_at')
        batch_op.drop_index('ix_visitor_events_occurred_at')

    op.drop_table('visitor_events')
    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visitors_contact_id'))

    op.drop_table('visitors')
