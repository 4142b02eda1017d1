"""Funds check and block (issue 17, item 3): a batch's funds blocks with the sponsor bank, one per rail
with funds control and currency (docs/TREASURY.md).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "funds_blocks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("block_id", sa.Text, nullable=False, unique=True),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("rail", sa.Text, nullable=False),
        sa.Column("currency_code", sa.Text, nullable=False),
        sa.Column("payer_fa", sa.Text, nullable=False),
        sa.Column("amount_hundredths", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False, server_default=""),
        sa.Column("reason_message", sa.Text, nullable=False, server_default=""),
        sa.Column("bank_reference", sa.Text, nullable=False, server_default=""),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expire_time", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_funds_blocks_batch", "funds_blocks", ["batch_id"])
    op.create_index("ix_funds_blocks_rail_state", "funds_blocks", ["rail", "state"])


def downgrade() -> None:
    op.drop_index("ix_funds_blocks_rail_state", table_name="funds_blocks")
    op.drop_index("ix_funds_blocks_batch", table_name="funds_blocks")
    op.drop_table("funds_blocks")
