"""the daily scans: how far each shop's scan ran, and the date keys it finds a day's matches by

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobs.store.models


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scan_states',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('fact', sa.String(length=64), nullable=False),
    sa.Column('through', sa.Date(), nullable=False),
    sa.Column('pass_until', sa.Date(), nullable=True),
    sa.Column('after_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('scanned_at', jobs.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_scan_states_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_states')),
    sa.UniqueConstraint('shop_id', 'fact', name=op.f('uq_scan_states_shop_id_fact'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birthday_md', sa.SmallInteger(), nullable=True))
        batch_op.create_index('ix_contacts_shop_id_birthday_md', ['shop_id', 'birthday_md'], unique=False)
        batch_op.create_index('ix_contacts_shop_id_consent_state_consent_at', ['shop_id', 'consent_state', 'consent_at'], unique=False)
        batch_op.create_index('ix_contacts_shop_id_first_order_at', ['shop_id', 'first_order_at'], unique=False)
        batch_op.create_index('ix_contacts_shop_id_last_order_at', ['shop_id', 'last_order_at'], unique=False)

    # the birthdays already held get their month and day (the model keeps it from now on)
    if op.get_bind().dialect.name == 'sqlite':
        month_day = "CAST(strftime('%m%d', birthday) AS INTEGER)"
    else:
        month_day = "CAST(EXTRACT(MONTH FROM birthday) * 100 + EXTRACT(DAY FROM birthday) AS SMALLINT)"
    op.execute(f"UPDATE contacts SET birthday_md = {month_day} WHERE birthday IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_shop_id_last_order_at')
        batch_op.drop_index('ix_contacts_shop_id_first_order_at')
        batch_op.drop_index('ix_contacts_shop_id_consent_state_consent_at')
        batch_op.drop_index('ix_contacts_shop_id_birthday_md')
        batch_op.drop_column('birthday_md')

    op.drop_table('scan_states')
