"""Payments are updated in place: no index names a column dispatch changes, and pages keep free room.

The (batch_id, status) and SENT-age indexes go: completion reads batches.unfinished_count (0005), the
sweeper scans only batches still in progress, and operator queries read a batch by its primary key.
The reference index's predicate moves from status to rail, which is set exactly for accepted payments.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Each payment is updated about three times soon after it is written: 40% of each page stays free for
# the new versions, which page pruning then reclaims.
FILLFACTOR = 60


def upgrade() -> None:
    op.drop_index("ix_payments_batch_status", table_name="payments")
    op.drop_index("ix_payments_sent_age", table_name="payments")
    op.drop_index("uq_payments_batch_reference", table_name="payments")
    op.create_index(
        "uq_payments_batch_reference",
        "payments",
        ["batch_id", "reference_id"],
        unique=True,
        postgresql_where=sa.text("rail IS NOT NULL"),
        sqlite_where=sa.text("rail IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE payments SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE payments RESET (fillfactor)")
    op.drop_index("uq_payments_batch_reference", table_name="payments")
    op.create_index(
        "uq_payments_batch_reference",
        "payments",
        ["batch_id", "reference_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'rejected'"),
        sqlite_where=sa.text("status <> 'rejected'"),
    )
    op.create_index(
        "ix_payments_sent_age",
        "payments",
        ["update_time"],
        postgresql_where=sa.text("status = 'sent'"),
        sqlite_where=sa.text("status = 'sent'"),
    )
    op.create_index("ix_payments_batch_status", "payments", ["batch_id", "status"])
