"""the legal basis of each send, and why a contact did not start a flow

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legal_basis', sa.JSON(), nullable=True))

    op.create_table('non_enrolments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=128), nullable=True),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('first_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_non_enrolments_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_non_enrolments_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_non_enrolments')),
    sa.UniqueConstraint('shop_id', 'contact_id', 'flow', name=op.f('uq_non_enrolments_shop_id_contact_id_flow'))
    )


def downgrade() -> None:
    op.drop_table('non_enrolments')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('legal_basis')
