"""Verifying Examtrail's webhook notifications (Standard Webhooks and ``X-Inspera-Signature``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from examtrail_client.errors import VerificationError

TOLERANCE_SECONDS = 5 * 60


def _standard_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("the webhook secret is not whsec_<base64>", code="bad_secret") from None


def _bytes(header: str) -> bytes:
    """A header value as bytes to compare in constant time (any text: a signature holding
    non-ASCII characters simply does not match)."""
    return header.encode("utf-8", "surrogatepass")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    require_both: bool = True,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Checks a notification's signatures on its **raw** body and returns the parsed payload.

    Both the Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``: HMAC-SHA256 of ``{id}.{timestamp}.{body}``, timestamp within
    ``tolerance`` seconds) and Inspera's ``X-Inspera-Signature`` (hex HMAC-SHA1 of the body
    with the secret string as key) are checked. With ``require_both=False`` one valid
    signature is enough, but any signature present must still be valid.
    Raises :class:`VerificationError` otherwise.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    checked = 0
    signature_header = lower.get("webhook-signature")
    if signature_header is not None:
        msg_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
        try:
            sent_at = int(stamp.encode("ascii"))  # not int(stamp): it takes any script's digits
        except ValueError:
            raise VerificationError(
                "webhook-timestamp is missing or not a number", code="bad_timestamp"
            ) from None
        if abs((now if now is not None else time.time()) - sent_at) > tolerance:
            raise VerificationError("webhook-timestamp is too far from now", code="stale_timestamp")
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest())
        candidates = [part.partition(",")[2] for part in signature_header.split() if part.startswith("v1,")]
        if not any(hmac.compare_digest(expected, _bytes(candidate)) for candidate in candidates):
            raise VerificationError("webhook-signature does not match", code="bad_signature")
        checked += 1
    elif require_both:
        raise VerificationError("the webhook-signature header is missing", code="missing_signature")
    inspera = lower.get("x-inspera-signature")
    if inspera is not None:
        expected_hex = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest().encode()
        if not hmac.compare_digest(expected_hex, _bytes(inspera.strip().lower())):
            raise VerificationError("X-Inspera-Signature does not match", code="bad_signature")
        checked += 1
    elif require_both:
        raise VerificationError("the X-Inspera-Signature header is missing", code="missing_signature")
    if not checked:
        raise VerificationError("the notification carries no signature", code="missing_signature")
    payload: dict[str, Any] = json.loads(body)
    return payload
