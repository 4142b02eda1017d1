"""G2P Connect: received messages, callbacks to send, and payment statuses already called back.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "g2p_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("sender_id", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("body_digest", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False, unique=True),
        sa.Column("transaction_id", sa.Text, nullable=False, server_default=""),
        sa.Column("sender_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id")),
        sa.Column("reported", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("create_time", Tz, nullable=False),
        sa.UniqueConstraint("sender_id", "message_id", name="uq_g2p_messages_sender_message"),
    )
    op.create_index(
        "ix_g2p_messages_unreported",
        "g2p_messages",
        ["id"],
        postgresql_where=sa.text("NOT reported"),
        sqlite_where=sa.text("NOT reported"),
    )
    op.create_table(
        "g2p_callbacks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.BigInteger, sa.ForeignKey("g2p_messages.id"), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_time", Tz, nullable=False),
        sa.Column("sent_time", Tz),
        sa.Column("abandoned", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", Tz, nullable=False),
    )
    op.create_index(
        "ix_g2p_callbacks_due",
        "g2p_callbacks",
        ["next_attempt_time"],
        postgresql_where=sa.text("sent_time IS NULL AND NOT abandoned"),
        sqlite_where=sa.text("sent_time IS NULL AND NOT abandoned"),
    )
    op.create_table(
        "g2p_reported",
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "number", "status", name="pk_g2p_reported"),
    )


def downgrade() -> None:
    op.drop_table("g2p_reported")
    op.drop_index("ix_g2p_callbacks_due", "g2p_callbacks")
    op.drop_table("g2p_callbacks")
    op.drop_index("ix_g2p_messages_unreported", "g2p_messages")
    op.drop_table("g2p_messages")
