"""Claim leases: one delivery of a chunk owns its payments until its lease ends.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("lease_owner", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_expire_time", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("lease_expire_time")
        batch.drop_column("lease_owner")
