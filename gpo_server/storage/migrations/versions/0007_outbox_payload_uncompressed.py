"""Outbox payloads are stored out of line without compression.

A work chunk's payload (about 200 bytes per payment) went through PostgreSQL's pglz compression when
written, and through decompression when the relay read it back: CPU on the intake path for bytes that
live only until they are published.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTENDED")
