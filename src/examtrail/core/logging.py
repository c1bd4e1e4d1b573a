"""Logging set-up that keeps secrets out of log lines.

Old Inspera clients send the API key as ``?code=...``, and signed links carry their
signature in the query string; access logs would otherwise record both.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# Query or form parameters whose values are credentials (matched case-insensitively).
SECRET_PARAMS = (
    "code",
    "client_secret",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "password",
    "secret",
    "sig",
    "signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
)
_PATTERN = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in SECRET_PARAMS) + r")=)[^&\s\"']*")
# Credentials recognisable wherever they appear: bearer tokens, API keys, webhook secrets.
_TOKENS = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+|\b(etk_|whsec_)[A-Za-z0-9_+/=-]+")


def _token(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + "[redacted]"


def redact(text: str) -> str:
    return _TOKENS.sub(_token, _PATTERN.sub(r"\1[redacted]", text))


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, int | float | bytes) or arg is None:
        return arg
    # URL objects and the like: replaced by their redacted text only when it differs.
    text = str(arg)
    cleaned = redact(text)
    return cleaned if cleaned != text else arg


def redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(arg) for arg in record.args)
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_redaction() -> None:
    """Redact every record at creation, whichever logger or handler it goes to."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "examtrail_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    factory.examtrail_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
