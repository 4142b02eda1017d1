"""Program cycles (issue 17, items 1 and 2): cycles with budgets per currency and a window, the cycle a
batch pays in, and who holds each beneficiary of a cycle.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.add_column("batches", sa.Column("cycle", sa.Text, nullable=False, server_default=""))
    op.create_index(
        "ix_batches_program_cycle",
        "batches",
        ["program", "cycle"],
        postgresql_where=sa.text("cycle <> ''"),
        sqlite_where=sa.text("cycle <> ''"),
    )
    op.create_table(
        "cycles",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("program", sa.Text, nullable=False),
        sa.Column("cycle", sa.Text, nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True)),
        sa.Column("end_time", sa.DateTime(timezone=True)),
        sa.Column("allow_repeat_payments", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("program", "cycle", name="uq_cycles_program_cycle"),
    )
    op.create_table(
        "cycle_budgets",
        sa.Column("cycle_id", sa.BigInteger, sa.ForeignKey("cycles.id"), nullable=False),
        sa.Column("currency_code", sa.Text, nullable=False),
        sa.Column("budget_hundredths", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("cycle_id", "currency_code", name="pk_cycle_budgets"),
    )
    op.create_table(
        "cycle_beneficiaries",
        sa.Column("cycle_id", sa.BigInteger, sa.ForeignKey("cycles.id"), nullable=False),
        sa.Column("beneficiary_key", sa.Text, nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("cycle_id", "beneficiary_key", name="pk_cycle_beneficiaries"),
    )
    op.create_index("ix_cycle_beneficiaries_payment", "cycle_beneficiaries", ["batch_id", "number"])


def downgrade() -> None:
    op.drop_table("cycle_beneficiaries")
    op.drop_table("cycle_budgets")
    op.drop_table("cycles")
    op.drop_index("ix_batches_program_cycle", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("cycle")
