"""outbox.trace_context: the W3C traceparent of the upload that produced a chunk (issue 16, item 2).

Written at intake when tracing is on; the relay publishes it as the chunk's AMQP headers, so the sidecar's
spans join the upload's trace. Nullable: NULL when tracing is off and for retries and sweeps.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("trace_context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("trace_context")
