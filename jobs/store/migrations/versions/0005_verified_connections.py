"""verified connections: a store's keys wait on their connect until a call with them works

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connect_nonces', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('state', sa.String(length=16), nullable=False, server_default='issued')
        )
        batch_op.add_column(sa.Column('requested_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('consumer_key_enc', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('consumer_secret_enc', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True
            )
        )
        batch_op.add_column(sa.Column('reason', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'settled_at', jobs.store.models.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            'ix_connect_nonces_requested_by_created_at',
            ['requested_by', 'created_at'],
            unique=False,
        )
    # a nonce used before this version connected its store without a check: it is settled
    op.execute("UPDATE connect_nonces SET state = 'connected' WHERE used_at IS NOT NULL")

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_webhook_secret_enc', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_column('previous_webhook_secret_enc')

    with op.batch_alter_table('connect_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_connect_nonces_requested_by_created_at')
        batch_op.drop_column('settled_at')
        batch_op.drop_column('reason')
        batch_op.drop_column('shop_id')
        batch_op.drop_column('consumer_secret_enc')
        batch_op.drop_column('consumer_key_enc')
        batch_op.drop_column('requested_by')
        batch_op.drop_column('state')
