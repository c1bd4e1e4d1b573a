"""signed exports: signing keys and the export's signature

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

- ``signing_keys``: the Ed25519 keys that sign finished exports (private key sealed under
  the service's secret key). ``current`` is true for one row and NULL for the rest; its
  unique constraint keeps two processes from creating two current keys.
- ``export_jobs.signature``: the compact JWS of a finished export. Exports finished before
  this migration have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("current", name=op.f("uq_signing_keys_current")),
    )
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.drop_column("signature")
    op.drop_table("signing_keys")
