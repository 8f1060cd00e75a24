"""shops: the public key storefront events name a shop by

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a column and an index: SQLite adds both in place (a unique constraint would
    # rebuild shops, and dropping the old table cascades to every shop's rows)
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storefront_key', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_shops_storefront_key', ['storefront_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index('ix_shops_storefront_key')
        batch_op.drop_column('storefront_key')
