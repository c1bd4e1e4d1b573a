"""Logging set-up: JSON or text lines that carry the request and job context, and keep
secrets out.

Old Inspera clients send the API key as ``?code=...``, and signed links carry their
signature in the query string; access logs would otherwise record both. Redaction runs
when a record is created, and the JSON formatter redacts ``extra`` fields too.
"""

from __future__ import annotations

import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from examtrail.core.context import current_job, current_request_id

if TYPE_CHECKING:
    from examtrail.core.settings import Settings

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
    """Redact every record at creation, whichever logger or handler it goes to, and give it
    the request and job context of the moment."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "examtrail_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        # The context as it is where the line is logged (handlers may format it elsewhere).
        # One attribute, so an ``extra={"job_id": ...}`` of a caller never collides with it.
        record.examtrail_context = context_fields()
        return record

    factory.examtrail_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# (uvicorn's ``color_message`` is its message again with terminal colours.)
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "examtrail_context",
}


def context_fields() -> dict[str, Any]:
    """The request id and the job being worked on, as far as they are known here."""
    fields: dict[str, Any] = {}
    request_id = current_request_id()
    if request_id is not None:
        fields["request_id"] = request_id
    job = current_job()
    if job is not None:
        for name in ("job_id", "test_id", "tenant", "delivery_id"):
            value = getattr(job, name)
            if value is not None:
                fields[name] = value
    return fields


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The context captured when ``record`` was made, else the current one."""
    captured = getattr(record, "examtrail_context", None)
    return dict(captured) if isinstance(captured, dict) else context_fields()


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}


def _clean(value: object) -> object:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the context
    (``request_id``; ``job_id``, ``test_id``, ``tenant`` in jobs), then ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(record_context(record))
        for key, value in _extra_fields(record).items():
            if key not in ("time", "level", "logger", "message"):
                line[key] = _clean(value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message`` followed by the context as ``key=value`` pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = record_context(record) | {k: _clean(v) for k, v in _extra_fields(record).items()}
        if fields:
            first, newline, rest = text.partition("\n")
            pairs = " ".join(f"{key}={value}" for key, value in fields.items())
            text = f"{first} [{pairs}]{newline}{rest}"
        return redact(text)


def formatter(kind: Literal["json", "text"] = "json") -> logging.Formatter:
    """The formatter of a log format (a ``logging.config`` factory: uvicorn's workers use it)."""
    return JsonFormatter() if kind == "json" else TextFormatter()


def logging_config(settings: Settings) -> dict[str, Any]:
    """``logging.config.dictConfig`` for every process: one handler on stderr at the root.

    uvicorn's own loggers pass their lines up to it; its access log is off (the API writes
    its own, with the route template and request id)."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "examtrail": {"()": f"{__name__}.formatter", "kind": settings.resolved_log_format},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "examtrail",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            # httpx logs every request's full URL at INFO: a webhook endpoint's path or query
            # may carry the receiver's token. The sender logs each attempt itself, without it.
            "httpx": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }


def configure_logging(settings: Settings) -> None:
    install_redaction()
    logging.config.dictConfig(logging_config(settings))
