"""Payment history: payment_status_changes, filled by a trigger on payments whenever a status changes.

PostgreSQL: a statement-level trigger over the UPDATE's transition tables, so each chunk's UPDATE adds one
INSERT ... SELECT, never a row per round trip. SQLite (in process) has row-level triggers only.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

_COLUMNS = (
    "batch_id, number, previous_status, previous_time, status, change_time, reason_code, reason_message,"
    " attempts"
)


def upgrade() -> None:
    op.create_table(
        "payment_status_changes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("previous_status", sa.Text, nullable=False),
        sa.Column("previous_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("change_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False),
        sa.Column("reason_message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_payment_status_changes_payment", "payment_status_changes", ["batch_id", "number", "id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION gpo_payment_status_changes() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN INSERT INTO payment_status_changes ({_COLUMNS})"
            " SELECT n.batch_id, n.number, o.status, o.update_time, n.status, n.update_time, n.reason_code,"
            " n.reason_message, n.attempts"
            " FROM gpo_new_payments AS n JOIN gpo_old_payments AS o"
            " ON o.batch_id = n.batch_id AND o.number = n.number"
            " WHERE o.status <> n.status"
            " ORDER BY n.batch_id, n.number;"
            " RETURN NULL; END $$"
        )
        # Transition tables rule out a column list (UPDATE OF status): every UPDATE of payments runs it,
        # and the join finds nothing when no status changed.
        op.execute(
            "CREATE TRIGGER payments_status_changes AFTER UPDATE ON payments"
            " REFERENCING OLD TABLE AS gpo_old_payments NEW TABLE AS gpo_new_payments"
            " FOR EACH STATEMENT EXECUTE FUNCTION gpo_payment_status_changes()"
        )
    else:
        op.execute(
            "CREATE TRIGGER payments_status_changes AFTER UPDATE OF status ON payments"
            " WHEN OLD.status <> NEW.status"
            f" BEGIN INSERT INTO payment_status_changes ({_COLUMNS})"
            " VALUES (NEW.batch_id, NEW.number, OLD.status, OLD.update_time, NEW.status, NEW.update_time,"
            " NEW.reason_code, NEW.reason_message, NEW.attempts); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER payments_status_changes ON payments")
        op.execute("DROP FUNCTION gpo_payment_status_changes()")
    else:
        op.execute("DROP TRIGGER payments_status_changes")
    op.drop_index("ix_payment_status_changes_payment", "payment_status_changes")
    op.drop_table("payment_status_changes")
