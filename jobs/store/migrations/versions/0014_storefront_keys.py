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
    # Only ALTER TABLE ... ADD COLUMN and CREATE INDEX: on SQLite, a change that rebuilds
    # `shops` (a NOT NULL set afterwards, say) drops the old table, and with foreign keys
    # on that deletes every row that refers to a shop (ON DELETE CASCADE). The key is
    # therefore added NOT NULL with an empty default, then filled in.
    op.add_column('shops', sa.Column('storefront_key', sa.String(length=29), nullable=False, server_default=''))
    op.add_column('shops', sa.Column('storefront_origins', sa.JSON(), nullable=True))
    op.add_column('shops', sa.Column('plugin_secret_enc', sa.Text(), nullable=True))
    shops = sa.table('shops', sa.column('id', sa.BigInteger()), sa.column('storefront_key', sa.String()))
    connection = op.get_bind()
    for (shop_id,) in connection.execute(sa.select(shops.c.id)).all():
        connection.execute(
            shops.update().where(shops.c.id == shop_id).values(storefront_key=_public_key())
        )
    op.create_index('ix_shops_storefront_key', 'shops', ['storefront_key'], unique=True)
    if connection.dialect.name != 'sqlite':
        # every shop is given its key by the code (the model's default); SQLite keeps
        # the empty default, since dropping it would rebuild the table
        op.alter_column('shops', 'storefront_key', server_default=None)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_storefront_shop_id_received_at', ['shop_id', 'received_at'], unique=False,
            postgresql_where=sa.text("topic LIKE 'storefront/%'"),
            sqlite_where=sa.text("topic LIKE 'storefront/%'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_storefront_shop_id_received_at')
    op.drop_index('ix_shops_storefront_key', table_name='shops')
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35 and newer too): no rebuild of
    # `shops`, which would delete the rows referring to it (see upgrade)
    for column in ('plugin_secret_enc', 'storefront_origins', 'storefront_key'):
        op.execute(f'ALTER TABLE shops DROP COLUMN {column}')
