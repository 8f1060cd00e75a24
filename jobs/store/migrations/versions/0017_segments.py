"""segments: customers' tags on the contact, each order's products, contacts by number of orders

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the orders read at a time while the products of those already held are written
BATCH = 2000


def upgrade() -> None:
    op.create_table('order_products',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_row_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['order_row_id'], ['orders.id'], name=op.f('fk_order_products_order_row_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_products_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_products')),
    sa.UniqueConstraint('order_row_id', 'product_id', name=op.f('uq_order_products_order_row_id_product_id'))
    )
    with op.batch_alter_table('order_products', schema=None) as batch_op:
        batch_op.create_index('ix_order_products_shop_id_product_id', ['shop_id', 'product_id'], unique=False)
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.Text(), nullable=True))
        batch_op.create_index('ix_contacts_shop_id_orders_count', ['shop_id', 'orders_count'], unique=False)

    # the orders already held get their products (the intake keeps them from now on);
    # customers' tags come with each customer's next update (they were not kept before)
    bind = op.get_bind()
    orders = sa.table('orders', sa.column('id'), sa.column('shop_id'), sa.column('data', sa.JSON()))
    products = sa.table(
        'order_products', sa.column('shop_id'), sa.column('order_row_id'), sa.column('product_id')
    )
    after = 0
    while True:
        batch = bind.execute(
            sa.select(orders.c.id, orders.c.shop_id, orders.c.data)
            .where(orders.c.id > after)
            .order_by(orders.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        rows = []
        for order_id, shop_id, data in batch:
            if isinstance(data, str):
                data = json.loads(data)
            seen: dict[str, None] = {}
            for item in (data or {}).get('line_items') or []:
                product_id = item.get('product_id') if isinstance(item, dict) else None
                if product_id and len(str(product_id)) <= 64:
                    seen.setdefault(str(product_id), None)
            rows += [
                {'shop_id': shop_id, 'order_row_id': order_id, 'product_id': p}
                for p in list(seen)[:500]
            ]
        if rows:
            bind.execute(sa.insert(products), rows)
        after = batch[-1][0]


def downgrade() -> None:
    op.drop_index('ix_contacts_shop_id_orders_count', table_name='contacts')
    # in place: rebuilding `contacts` on SQLite would delete every row referring to one
    op.execute('ALTER TABLE contacts DROP COLUMN tags')
    with op.batch_alter_table('order_products', schema=None) as batch_op:
        batch_op.drop_index('ix_order_products_shop_id_product_id')
    op.drop_table('order_products')
