"""Authenticated encryption of secrets kept in the database (AES-256-GCM under HKDF-derived keys).

Webhook secrets and other stored secrets are sealed under a key derived from the
service's secret key, one derivation per purpose, and bound to the row they belong to.
With several secret keys (``EXAMTRAIL_SECRET_KEYS``, newest first) a secret is sealed
under the newest and names it by key id, so that it opens after a rotation and
``examtrail keys reencrypt`` can tell which secrets still need moving.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

WEBHOOK_SECRETS = b"examtrail/webhook-secrets/v1"
SIGNING_KEYS = b"examtrail/signing-keys/v1"


def key_id(master_key: bytes) -> str:
    """A short public name of a secret key (a one-way hash: it reveals nothing usable)."""
    return hashlib.sha256(b"examtrail/key-id\0" + master_key).hexdigest()[:12]


def by_hint(keys: Sequence[bytes], kid: str | None) -> list[bytes]:
    """``keys`` with the one named ``kid`` first (the others follow: a hint, never a filter)."""
    if kid is None:
        return list(keys)
    return sorted(keys, key=lambda k: key_id(k) != kid)


class SecretUnavailableError(Exception):
    """A stored secret cannot be decrypted (the service's secret key changed?)."""


class SecretBox:
    """Authenticated encryption of one kind of stored secret (AES-256-GCM, HKDF-derived key).

    ``master_key`` is one secret key or the keyring, newest first: ``seal`` uses the newest,
    ``open`` the one the sealed text names (``v2.<key id>.<data>``), else tries each
    (``v1.<data>``, sealed before key ids existed)."""

    def __init__(self, master_key: bytes | Sequence[bytes], purpose: bytes = WEBHOOK_SECRETS) -> None:
        keys = [master_key] if isinstance(master_key, bytes) else list(master_key)
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._boxes = [(key_id(k), AESGCM(_derive(k, purpose))) for k in keys]

    @property
    def newest_kid(self) -> str:
        return self._boxes[0][0]

    def seal(self, secret: str, context: str) -> str:
        kid, aead = self._boxes[0]
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, secret.encode(), context.encode())
        return f"v2.{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def sealed_with_newest(self, token: str) -> bool:
        """Whether ``token`` names the newest key (else ``keys reencrypt`` moves it)."""
        return token.startswith(f"v2.{self.newest_kid}.")

    def open(self, token: str, context: str) -> str:
        version, _, rest = token.partition(".")
        if version == "v2":
            kid, _, payload = rest.partition(".")
            boxes = sorted(self._boxes, key=lambda box: box[0] != kid)
        elif version == "v1":
            payload, boxes = rest, self._boxes
        else:
            raise SecretUnavailableError("unknown secret format")
        try:
            raw = base64.urlsafe_b64decode(payload)
        except (binascii.Error, ValueError):
            raise SecretUnavailableError("the stored secret is damaged") from None
        for _kid, aead in boxes:
            try:
                return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
            except (InvalidTag, ValueError):
                continue
        raise SecretUnavailableError("the signing secret cannot be decrypted")


def _derive(master_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_key)


@dataclass
class Resealed:
    """Counts of one ``keys reencrypt`` pass over stored secrets."""

    moved: int = 0
    current: int = 0
    unreadable: int = 0

    @property
    def total(self) -> int:
        return self.moved + self.current + self.unreadable

    def reseal(self, box: SecretBox, sealed: str, context: str) -> str | None:
        """``sealed`` re-sealed under the newest key; None when it already is (or no key
        opens it: it is counted and left as it is, so nothing is lost)."""
        if box.sealed_with_newest(sealed):
            self.current += 1
            return None
        try:
            secret = box.open(sealed, context)
        except SecretUnavailableError:
            self.unreadable += 1
            return None
        self.moved += 1
        return box.seal(secret, context)
