"""Typed exceptions. Each carries the server's ``error`` code and ``message`` where there is one."""

from __future__ import annotations

from typing import Any


class ExamtrailError(Exception):
    """Base class of every error this package raises.

    ``code`` is the server's machine-readable ``error`` (or a client-side code such as
    ``unreachable``), ``message`` its human text, ``status`` the HTTP status when the error
    came from an answer, and ``details`` the server's per-item ``details`` list.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or []

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        return f"{prefix}{self.code}: {self.message}"


class ApiError(ExamtrailError):
    """The server answered with an error (4xx/5xx) that no more specific class describes."""


class NotFoundError(ApiError):
    """404: the test, job or candidate does not exist (or belongs to another tenant)."""


class ConflictError(ApiError):
    """409: e.g. cancelling a job that already ended, or an eventId reused with other content."""


class AuthenticationError(ExamtrailError):
    """The client id or API key was refused, or the token lacks the scope for the call."""

    exit_code = 3


class ExportFailedError(ExamtrailError):
    """The export ended ``failed`` or ``cancelled``; ``job`` is its last status."""

    def __init__(self, message: str, *, job: Any, code: str = "export_failed") -> None:
        super().__init__(message, code=code)
        self.job = job


class VerificationError(ExamtrailError):
    """A downloaded file does not match the published size or SHA-256, or a webhook signature is wrong."""

    exit_code = 4


class ServerUnreachableError(ExamtrailError):
    """The server could not be reached (connection refused, DNS, timeouts after retries)."""

    exit_code = 5


def error_from_response(status: int, body: Any, fallback: str) -> ExamtrailError:
    """The typed exception for an error answer ``{"error", "message", "details"}``."""
    code = "http_error"
    message = fallback
    details: list[dict[str, Any]] = []
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        message = str(body.get("message") or body.get("error_description") or message)
        raw_details = body.get("details")
        if isinstance(raw_details, list):
            details = [d for d in raw_details if isinstance(d, dict)]
    cls: type[ExamtrailError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    else:
        cls = ApiError
    return cls(message, code=code, status=status, details=details)
