"""Maker-checker approval (issue 17, item 4): programs' approval policies, approvers' decisions per batch,
and each batch's uploader and required approvals. Applied after 0017 (funds blocks) and 0018 (cycles).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN with a constant default: no table rewrite (PostgreSQL 11+), and SQLite takes it as is.
    op.add_column("batches", sa.Column("uploader", sa.Text, nullable=False, server_default=""))
    op.add_column("batches", sa.Column("required_approvals", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "approval_policies",
        sa.Column("program", sa.Text, primary_key=True),
        sa.Column("amount_thresholds", sa.Text, nullable=False, server_default="{}"),
        sa.Column("count_threshold", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("required_approvals", sa.Integer, nullable=False, server_default="2"),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "batch_approvals",
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("approver", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "approver", name="pk_batch_approvals"),
    )


def downgrade() -> None:
    op.drop_table("batch_approvals")
    op.drop_table("approval_policies")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("required_approvals")
        batch.drop_column("uploader")
