"""storefront events: each shop's public storefront key, its extra origins, a plugin's secret

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import base64
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _public_key() -> str:
    # as jobs.merchant.storefront.new_public_key (a migration does not import the code it migrates)
    return "pk_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def upgrade() -> None:
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storefront_key', sa.String(length=29), nullable=True))
        batch_op.add_column(sa.Column('storefront_origins', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('plugin_secret_enc', sa.Text(), nullable=True))
    shops = sa.table('shops', sa.column('id', sa.BigInteger()), sa.column('storefront_key', sa.String()))
    connection = op.get_bind()
    for (shop_id,) in connection.execute(sa.select(shops.c.id)).all():
        connection.execute(
            shops.update().where(shops.c.id == shop_id).values(storefront_key=_public_key())
        )
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.alter_column('storefront_key', existing_type=sa.String(length=29), nullable=False)
        batch_op.create_index('ix_shops_storefront_key', ['storefront_key'], unique=True)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_storefront_shop_id_received_at', ['shop_id', 'received_at'], unique=False,
            postgresql_where=sa.text("topic LIKE 'storefront/%'"),
            sqlite_where=sa.text("topic LIKE 'storefront/%'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_storefront_shop_id_received_at')
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index('ix_shops_storefront_key')
        batch_op.drop_column('plugin_secret_enc')
        batch_op.drop_column('storefront_origins')
        batch_op.drop_column('storefront_key')
