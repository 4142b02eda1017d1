"""A per-batch count of unfinished payments, so completion is decided without searching the batch.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("unfinished_count", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "UPDATE batches SET unfinished_count = (SELECT count(*) FROM payments"
        " WHERE payments.batch_id = batches.id AND payments.status IN ('accepted', 'queued', 'sent'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("unfinished_count")
