from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from examtrail.core.db import Base, UTCDateTime, utcnow


class SigningKey(Base):
    """An Ed25519 key that signs finished exports. Exactly one is current; retired keys
    stay (and stay published in the JWKS) so that every signature made with them verifies."""

    __tablename__ = "signing_keys"
    # ``current`` is true for one row and NULL for the others: the unique constraint makes
    # "create the first key" and "rotate" safe against a concurrent process doing the same.
    __table_args__ = (UniqueConstraint("current"),)

    # RFC 7638 thumbprint of the public key (base64url SHA-256), the JWS header's ``kid``.
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), default="EdDSA")
    # The raw 32-byte public key, base64url without padding (the JWK's ``x``).
    public_key: Mapped[str] = mapped_column(String(64))
    # The raw private key sealed with core.crypto.SecretBox (purpose SIGNING_KEYS, context kid).
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    current: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
