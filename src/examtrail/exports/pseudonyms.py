"""Pseudonymised exports (option ``pseudonymize``): stable pseudonyms instead of identities.

A pseudonym is ``p_`` + 26 lowercase base32 characters (128 bits) of HMAC-SHA256 under the
tenant's own random key (table ``pseudonym_keys``, sealed with ``core.crypto.SecretBox``,
created on first use). The same id gives the same pseudonym in every export of the tenant
(researchers can join files); other tenants get others. ``userId`` (the candidate's, and an
event's registering user's) and ``candidateId`` are hashed under different labels, so a
candidate number never collides with a user id. Free text that names people is removed
(``flaggingInfo.comment``, ``extraInfo.value``), and so are attachments (no links).

This is pseudonymisation, not anonymisation: whoever holds the key (the service) can
re-identify, and what remains (times, event names, eventIds, flag types) may still point
at a person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence

import orjson
from sqlalchemy.orm import Session

from examtrail.core.crypto import Resealed, SecretBox
from examtrail.exports import repository

PSEUDONYM_KEYS = b"examtrail/pseudonyms/v1"
_KEY_BYTES = 32


class Pseudonyms:
    """The pseudonyms of one tenant."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _pseudonym(self, label: bytes, value: bytes) -> str:
        digest = hmac.new(self._key, label + b":" + value, hashlib.sha256).digest()
        return "p_" + base64.b32encode(digest[:16]).decode().rstrip("=").lower()

    def user(self, user_id: int) -> str:
        return self._pseudonym(b"userId", str(int(user_id)).encode())

    def candidate(self, candidate_id: str) -> str:
        return self._pseudonym(b"candidateId", candidate_id.encode())

    def event_doc(self, doc: str) -> str:
        """A stored event doc without identities: pseudonymous ``userId``, no comment, no
        ``extraInfo.value``, no attached files (keys otherwise in the seed's order)."""
        event = orjson.loads(doc)
        if event.get("userId") is not None:
            event["userId"] = self.user(event["userId"])
        extra = event.get("extraInfo")
        if isinstance(extra, dict):
            extra.pop("value", None)
        flag = event.get("flaggingInfo")
        if isinstance(flag, dict):
            flag.pop("comment", None)
        event["attachedFiles"] = []
        return orjson.dumps(event).decode()


def _context(tenant_id: int) -> str:
    return f"pseudonym-key:{int(tenant_id)}"


def tenant_pseudonyms(session: Session, box: SecretBox, tenant_id: int) -> Pseudonyms:
    """The tenant's pseudonyms; the key is created on first use (concurrent first uses agree:
    the first insert wins, the others read it). Raises ``SecretUnavailableError`` when the
    stored key cannot be opened."""
    sealed = repository.get_pseudonym_key(session, tenant_id)
    if sealed is None:
        fresh = base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode()
        repository.add_pseudonym_key(session, tenant_id, box.seal(fresh, _context(tenant_id)))
        sealed = repository.get_pseudonym_key(session, tenant_id)
        assert sealed is not None
    return Pseudonyms(base64.urlsafe_b64decode(box.open(sealed, _context(tenant_id))))


def secret_box(keyring: Sequence[bytes]) -> SecretBox:
    """Seals with the newest secret key, opens with any configured one (rotation)."""
    return SecretBox(keyring, PSEUDONYM_KEYS)


def reencrypt_keys(
    session: Session, keyring: Sequence[bytes], on_row: Callable[[bool], None] | None = None
) -> Resealed:
    """Re-seal every tenant's pseudonym key with the newest secret key (``keys reencrypt``)."""
    box = secret_box(keyring)
    result = Resealed()
    for tenant_id, sealed in repository.all_pseudonym_keys(session):
        moved = result.reseal(box, sealed, _context(tenant_id))
        if moved is not None:
            repository.set_pseudonym_key(session, tenant_id, moved)
        if on_row is not None:
            on_row(moved is not None)
    return result
