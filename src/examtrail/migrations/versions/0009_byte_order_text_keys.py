"""Event ids and attachment file names sort by code point on PostgreSQL too

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28

Exports order a candidate's events by time, then ``eventId``, and an event's files by name.
SQLite compares text byte by byte (code point order for UTF-8); PostgreSQL used the
database's collation, so the order of equal-time events depended on how the database was
created (``en_US.UTF-8`` puts ``a-b`` after ``ab``; ``C`` puts it before) and two
deployments exported the same events in different orders. ``COLLATE "C"`` on the two
columns makes the order the same everywhere; PostgreSQL rebuilds the indexes on them.
SQLite already compares bytes: nothing changes there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("events", "event_id", 128), ("attachments", "file_name", 255))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(length, collation="C"), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length in _COLUMNS:
        op.execute(
            sa.text(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({length}) COLLATE "default"')
        )
