"""The audit trail: one append-only, hash-chained row per state-changing call. On PostgreSQL a trigger
refuses UPDATE and DELETE; anyone able to bypass it still breaks the chain, which VerifyAuditTrail shows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("caller_kind", sa.Text, nullable=False),
        sa.Column("certificate_subject", sa.Text, nullable=False, server_default=""),
        sa.Column("batch_uid", sa.Text, nullable=False, server_default=""),
        sa.Column("payment_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("previous_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_batch", "audit_events", ["batch_uid", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION gpo_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events"
            " FOR EACH ROW EXECUTE FUNCTION gpo_audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION gpo_audit_append_only()")
    op.drop_index("ix_audit_events_batch", "audit_events")
    op.drop_table("audit_events")
