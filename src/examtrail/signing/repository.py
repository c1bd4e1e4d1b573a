from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from examtrail.core.db import update_rows
from examtrail.signing.models import SigningKey


def current_key(session: Session) -> SigningKey | None:
    return session.scalars(select(SigningKey).where(SigningKey.current.is_(True))).first()


def get_key(session: Session, kid: str) -> SigningKey | None:
    return session.get(SigningKey, kid)


def all_keys(session: Session) -> list[SigningKey]:
    """Every key, newest first."""
    return list(session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)))


def add_key(session: Session, key: SigningKey) -> None:
    session.add(key)
    session.flush()


def retire_current(session: Session, now: datetime) -> int:
    return update_rows(session, SigningKey, SigningKey.current.is_(True), current=None, retired_at=now)


def set_sealed(session: Session, kid: str, sealed: str) -> None:
    update_rows(session, SigningKey, SigningKey.kid == kid, private_key_encrypted=sealed)
