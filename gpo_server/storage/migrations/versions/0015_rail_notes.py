"""Rail notes (issue 19, item 1): what a rail sidecar must remember across attempts, kept in GPO's database
so that a rail keeps no local state and may run as several replicas.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "rail_notes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("rail", sa.Text, nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("rail", "tag", "idempotency_key", name="uq_rail_notes_rail_tag_key"),
    )
    op.create_index("ix_rail_notes_rail_key", "rail_notes", ["rail", "idempotency_key"])


def downgrade() -> None:
    op.drop_index("ix_rail_notes_rail_key", table_name="rail_notes")
    op.drop_table("rail_notes")
