"""Operator retries, stuck-payment sweeps, attention reasons, dead letters, operator request ids.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("retries", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("sweeps", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("failure_definite", sa.Boolean))
        batch.add_column(sa.Column("attention_reason", sa.Text, nullable=False, server_default=""))
    op.create_index(
        "ix_payments_sent_age",
        "payments",
        ["update_time"],
        postgresql_where=sa.text("status = 'sent'"),
        sqlite_where=sa.text("status = 'sent'"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("rail", sa.Text, nullable=False),
        sa.Column("chunk_id", sa.Text, nullable=False),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("payment_count", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("create_time", Tz, nullable=False),
    )
    op.create_table(
        "batch_operations",
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("create_time", Tz, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "request_id", name="pk_batch_operations"),
    )


def downgrade() -> None:
    op.drop_table("batch_operations")
    op.drop_table("dead_letters")
    op.drop_index("ix_payments_sent_age", "payments")
    with op.batch_alter_table("payments") as batch:
        for column in (
            "attention_reason",
            "failure_definite",
            "sweeps",
            "retries",
        ):
            batch.drop_column(column)
