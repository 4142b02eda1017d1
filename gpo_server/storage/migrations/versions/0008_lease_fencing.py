"""Lease fencing and in-flight windows: every claim gets a token its renewals and reports present, and a
payment stays BUSY until its holder's last rail call can no longer take effect.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("in_flight_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("in_flight_until")
        batch.drop_column("lease_token")
