"""Batches, payments and the transactional outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.Text, nullable=False, unique=True),
        sa.Column("program", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("payer_fa", sa.Text, nullable=False, server_default=""),
        sa.Column("callback_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("schedule_time", Tz),
        sa.Column("expected_payment_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("expected_total_hundredths", sa.BigInteger),
        sa.Column("payment_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("received_total_hundredths", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_chunk_sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("create_time", Tz, nullable=False),
        sa.Column("update_time", Tz, nullable=False),
        sa.UniqueConstraint("program", "request_id", name="uq_batches_program_request_id"),
    )
    op.create_table(
        "payments",
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("reference_id", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("payer_fa", sa.Text, nullable=False),
        sa.Column("payee_fa", sa.Text, nullable=False),
        sa.Column("amount_hundredths", sa.BigInteger),
        sa.Column("currency_code", sa.Text, nullable=False),
        sa.Column("payee_name", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("schedule_time", Tz),
        sa.Column("metadata_json", sa.Text),
        sa.Column("rail", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False, server_default=""),
        sa.Column("reason_message", sa.Text, nullable=False, server_default=""),
        sa.Column("rail_reference", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("update_time", Tz, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "number", name="pk_payments"),
    )
    op.create_index("ix_payments_batch_status", "payments", ["batch_id", "status"])
    op.create_index(
        "uq_payments_batch_reference",
        "payments",
        ["batch_id", "reference_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'rejected'"),
        sqlite_where=sa.text("status <> 'rejected'"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("chunk_id", sa.Text, nullable=False, unique=True),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("rail", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("not_before", Tz),
        sa.Column("create_time", Tz, nullable=False),
        sa.Column("publish_time", Tz),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["batch_id", "id"],
        postgresql_where=sa.text("publish_time IS NULL"),
        sqlite_where=sa.text("publish_time IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("payments")
    op.drop_table("batches")
