"""persons: one (campaign_id, status) index instead of campaign_id and status alone

Every query on a person's status names the campaign too (the dialer's, letters' and
holdout's selections), which a status-only index serves poorly once several campaigns share
the table; the campaign_id index repeated the leading column of ix_persons_campaign_ref. One
index fewer to maintain per person (both were appended in order on an import, so a 1M-row
sync load is not measurably faster for it: bench/RESULTS.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index("ix_persons_campaign_status", ["campaign_id", "status"], unique=False)
        batch_op.drop_index("ix_persons_status")
        batch_op.drop_index("ix_persons_campaign_id")


def downgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index("ix_persons_campaign_id", ["campaign_id"], unique=False)
        batch_op.create_index("ix_persons_status", ["status"], unique=False)
        batch_op.drop_index("ix_persons_campaign_status")
