"""Authenticated encryption of secrets kept in the database (AES-256-GCM under HKDF-derived keys).

Webhook secrets and other stored secrets are sealed under a key derived from the
service's secret key, one derivation per purpose, and bound to the row they belong to.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

WEBHOOK_SECRETS = b"examtrail/webhook-secrets/v1"


class SecretUnavailableError(Exception):
    """A stored secret cannot be decrypted (the service's secret key changed?)."""


class SecretBox:
    """Authenticated encryption of one kind of stored secret (AES-256-GCM, HKDF-derived key)."""

    _VERSION = "v1"

    def __init__(self, master_key: bytes, purpose: bytes = WEBHOOK_SECRETS) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_key)
        self._aead = AESGCM(key)

    def seal(self, secret: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return f"{self._VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, token: str, context: str) -> str:
        version, _, payload = token.partition(".")
        if version != self._VERSION:
            raise SecretUnavailableError("unknown secret format")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnavailableError("the signing secret cannot be decrypted") from None
