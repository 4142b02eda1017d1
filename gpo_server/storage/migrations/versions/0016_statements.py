"""Statement reconciliation (issue 17, item 5): imported bank statements, their entries, the payments each
entry matched, and the batches each statement was matched against.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "statements",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("statement_ref", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("entry_count", sa.Integer, nullable=False),
        sa.Column("reversed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account", "statement_ref", name="uq_statements_account_ref"),
    )
    op.create_table(
        "statement_entries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("statement_id", sa.BigInteger, sa.ForeignKey("statements.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("amount_hundredths", sa.BigInteger, nullable=False),
        sa.Column("currency_code", sa.Text, nullable=False),
        sa.Column("credit", sa.Boolean, nullable=False),
        sa.Column("booked", sa.Boolean, nullable=False),
        sa.Column("booking_date", sa.Date),
        sa.Column("end_to_end_ids", sa.Text, nullable=False),
        sa.Column("servicer_reference", sa.Text, nullable=False),
        sa.Column("batch_reference", sa.Text, nullable=False),
        sa.Column("batch_count", sa.Integer, nullable=False),
        sa.Column("returned", sa.Boolean, nullable=False),
        sa.Column("return_reason", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.UniqueConstraint("statement_id", "number", name="uq_statement_entries_number"),
    )
    op.create_table(
        "statement_matches",
        sa.Column("entry_id", sa.BigInteger, sa.ForeignKey("statement_entries.id"), nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "batch_id", "number", name="pk_statement_matches"),
    )
    op.create_index("ix_statement_matches_payment", "statement_matches", ["batch_id", "number"])
    op.create_table(
        "statement_batches",
        sa.Column("statement_id", sa.BigInteger, sa.ForeignKey("statements.id"), nullable=False),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.PrimaryKeyConstraint("statement_id", "batch_id", name="pk_statement_batches"),
    )
    op.create_index("ix_statement_batches_batch", "statement_batches", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_statement_batches_batch", table_name="statement_batches")
    op.drop_table("statement_batches")
    op.drop_index("ix_statement_matches_payment", table_name="statement_matches")
    op.drop_table("statement_matches")
    op.drop_table("statement_entries")
    op.drop_table("statements")
