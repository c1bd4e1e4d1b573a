"""evidence: server receipt time, per-tenant pseudonym keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

- ``events.received_at``: the server's clock (UTC ms since the epoch) when the event was
  ingested. Existing rows are backfilled from ``created_at``, which the ingest path has
  always set to the server's time of the inserting write: the same instant, to the ms.
- ``pseudonym_keys``: one random HMAC key per tenant for pseudonymised exports, sealed
  with ``core.crypto.SecretBox`` (purpose ``examtrail/pseudonyms/v1``), created on first use.

Evidence-file immutability needs no schema change: ``attachments`` already holds each
file's SHA-256 and a storage key that is never reused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_at", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # created_at is naive UTC (``core.db.UTCDateTime``).
        op.execute(
            "UPDATE events SET received_at = "
            "floor(extract(epoch FROM created_at) * 1000)::bigint WHERE received_at IS NULL"
        )
    else:
        # Exact from the stored text 'YYYY-MM-DD HH:MM:SS[.ffffff]' (no float rounding).
        op.execute(
            "UPDATE events SET received_at = "
            "CAST(strftime('%s', created_at) AS INTEGER) * 1000 "
            "+ CAST(substr(created_at || '000', 21, 3) AS INTEGER) "
            "WHERE received_at IS NULL"
        )
    op.create_table(
        "pseudonym_keys",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_pseudonym_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_pseudonym_keys")),
    )


def downgrade() -> None:
    op.drop_table("pseudonym_keys")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("received_at")
