"""tests.change_seq: SQLite's change counter per test

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

On SQLite the change stamp of a write (``ingest_xid``) was one above the highest stamp of
the test's rows. A candidate's erasure moves rows out of the test, which could lower that
maximum, so a later write reused a stamp that earlier ``nextSince`` cursors and reuse
checks already covered: its rows were missed. ``tests.change_seq`` is a counter of its own
that deletes never lower.

Existing tests start at the clock in microseconds (as new ones do,
``ingest.models.first_change_seq``): above every stamp and cursor handed out before,
which counted up from 1. PostgreSQL keeps transaction ids as stamps: the column is unused there.
"""

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name != "postgresql":
        op.execute(sa.text("UPDATE tests SET change_seq = :start").bindparams(start=time.time_ns() // 1000))


def downgrade() -> None:
    # Not a batch: SQLite 3.35+ drops a plain column in place, without rebuilding ``tests``.
    op.drop_column("tests", "change_seq")
