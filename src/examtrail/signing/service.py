"""The service's Ed25519 signing keys: created on first use, rotated by ``examtrail keys
rotate``, published as a JWKS; and the signature of a finished export.

An export's signature is a compact JWS (``alg: EdDSA``, ``kid``) over
``{jobId, testId, tenant, created, options, fileSize, sha256}``: anyone holding the JWKS
can check offline, with any JOSE library, that a downloaded file is the one this service
produced for that job. Private keys are stored sealed (``core.crypto.SecretBox``, purpose
``SIGNING_KEYS``) under the service's secret keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from examtrail.audit import actions
from examtrail.auth import service as auth_service
from examtrail.core import crypto
from examtrail.core.db import transaction, utcnow
from examtrail.core.settings import Settings
from examtrail.signing import repository
from examtrail.signing.models import SigningKey
from examtrail.signing.schemas import Jwk, Jwks

ALGORITHM = "EdDSA"


class ExportClaims(TypedDict):
    """What an export's signature covers (the JWS payload), as the status shows it."""

    jobId: str
    testId: int
    tenant: int
    created: str
    options: dict[str, Any]
    fileSize: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Signer:
    """The current key, opened: signs exports."""

    kid: str
    private_key: Ed25519PrivateKey

    def sign(self, claims: ExportClaims) -> str:
        return jwt.encode(dict(claims), self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(x: str) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key (the key's ``kid``)."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def key_box(settings: Settings) -> crypto.SecretBox:
    return crypto.SecretBox(settings.secret_keyring(), crypto.SIGNING_KEYS)


def _new_key(settings: Settings) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    x = _b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    kid = thumbprint(x)
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        public_key=x,
        private_key_encrypted=key_box(settings).seal(_b64(raw), kid),
        current=True,
        created_at=utcnow(),
    )


def _open(settings: Settings, key: SigningKey) -> Signer:
    raw = key_box(settings).open(key.private_key_encrypted, key.kid)
    private = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    return Signer(kid=key.kid, private_key=private)


def current_key(sessions: sessionmaker[Session], settings: Settings) -> SigningKey:
    """The current signing key, created (in its own transaction) when there is none yet.

    Two processes starting at once may both try to create it: the unique ``current``
    column lets one insert win; the other reads the winner's key."""
    with sessions() as session:
        key = repository.current_key(session)
    if key is not None:
        return key
    try:
        with transaction(sessions) as session:
            key = repository.current_key(session)
            if key is None:
                key = _new_key(settings)
                repository.add_key(session, key)
            return key
    except IntegrityError:
        with sessions() as session:
            key = repository.current_key(session)
        if key is None:  # pragma: no cover - the winner's row is committed by now
            raise
        return key


def signer(sessions: sessionmaker[Session], settings: Settings) -> Signer:
    """The current key, ready to sign (raises ``crypto.SecretUnavailableError`` when no
    configured secret key opens it)."""
    return _open(settings, current_key(sessions, settings))


def rotate(session: Session, settings: Settings, now: datetime | None = None) -> tuple[SigningKey, list[str]]:
    """Make a new key current; the old ones are retired but stay published. Returns the new
    key and the kids it replaced."""
    now = now or utcnow()
    retired = [k.kid for k in repository.all_keys(session) if k.current]
    repository.retire_current(session, now)
    key = _new_key(settings)
    key.created_at = now
    repository.add_key(session, key)
    # Every tenant's exports are signed by the new key from now on.
    auth_service.record_for_every_tenant(
        session, actions.SIGNING_KEY_ROTATED, actions.OBJECT_SIGNING_KEY, key.kid, {"retired": retired}
    )
    return key, retired


def jwks(session: Session) -> Jwks:
    """Every key, the current one first: retired keys still verify what they signed."""
    keys = sorted(repository.all_keys(session), key=lambda k: not k.current)
    return Jwks(keys=[Jwk(x=k.public_key, kid=k.kid) for k in keys])


def list_keys(session: Session) -> list[SigningKey]:
    return repository.all_keys(session)


def reencrypt_keys(
    session: Session, settings: Settings, on_row: Callable[[bool], None] | None = None
) -> crypto.Resealed:
    """Re-seal every private key with the newest secret key (``examtrail keys reencrypt``)."""
    box = key_box(settings)
    result = crypto.Resealed()
    for key in repository.all_keys(session):
        moved = result.reseal(box, key.private_key_encrypted, key.kid)
        if moved is not None:
            repository.set_sealed(session, key.kid, moved)
        if on_row is not None:
            on_row(moved is not None)
    return result
