"""Webhooks on a batch's callback_uri: webhook_batches (what was announced, where delivery stands) and
webhook_events (each signed event's fixed body, sent in sequence per batch).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_batches",
        sa.Column(
            "batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), primary_key=True, autoincrement=False
        ),
        sa.Column("last_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_state", sa.Text, nullable=False, server_default=""),
        sa.Column("last_unfinished", sa.BigInteger, nullable=False, server_default="-1"),
        sa.Column("last_event_time", sa.DateTime(timezone=True)),
        sa.Column("delivered_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("failed_time", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_time", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("batch_id", "sequence", name="uq_webhook_events_batch_sequence"),
    )
    # Batches from before webhooks existed count as announced as they are now: an upgrade must not send
    # every old batch's receiver a late event.
    op.execute(
        "INSERT INTO webhook_batches (batch_id, last_state, last_unfinished)"
        " SELECT id, state, unfinished_count FROM batches WHERE callback_uri <> '' AND state <> 'uploading'"
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("webhook_batches")
