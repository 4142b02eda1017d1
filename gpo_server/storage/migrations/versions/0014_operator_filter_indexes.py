"""Indexes for operators' filters (issue 16, item 3), on columns intake writes once and dispatch never
changes, so dispatch's updates of payments stay heap-only: a reference across batches, and a batch's
payments of one rail.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_payments_reference", "payments", ["reference_id", "batch_id"])
    op.create_index("ix_payments_batch_rail", "payments", ["batch_id", "rail", "number"])


def downgrade() -> None:
    op.drop_index("ix_payments_batch_rail", table_name="payments")
    op.drop_index("ix_payments_reference", table_name="payments")
