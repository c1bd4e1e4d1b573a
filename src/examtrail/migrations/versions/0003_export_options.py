"""export options: filters, formats, incremental exports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

- ``events.ingest_xid`` / ``candidates.ingest_xid``: which write produced (or last
  changed) the row. On PostgreSQL the writing transaction's id (``pg_current_xact_id``,
  a server default), compared with an export's snapshot to find rows committed after
  it; on SQLite (one writer at a time) a per-test counter the ingest code assigns.
  Rows written before this migration keep NULL: older than any cursor.
- ``export_jobs``: the normalised options, format, compression, the cursor of the
  job's snapshot (``next_since``) and how many attachment links the file carries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_XID_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("events", "candidates"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("ingest_xid", sa.BigInteger(), nullable=True))
        if postgres:
            # Added NULL first, default second: no table rewrite, old rows stay NULL.
            op.execute(f"ALTER TABLE {table} ALTER COLUMN ingest_xid SET DEFAULT {_XID_DEFAULT}")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f"ix_{table}_test_ingest_xid", ["test_pk", "ingest_xid"], unique=False)

    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", sa.Text(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("format", sa.String(length=8), nullable=False, server_default="json"))
        batch_op.add_column(
            sa.Column("compression", sa.String(length=8), nullable=False, server_default="none")
        )
        batch_op.add_column(sa.Column("next_since", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("files_written", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.create_index(
            "ix_export_jobs_tenant_test_created", ["tenant_id", "test_pk", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_export_jobs_tenant_test_created")
        batch_op.drop_column("files_written")
        batch_op.drop_column("next_since")
        batch_op.drop_column("compression")
        batch_op.drop_column("format")
        batch_op.drop_column("options")
    for table in ("candidates", "events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_test_ingest_xid")
            batch_op.drop_column("ingest_xid")
