"""Examtrail client: order, wait for, download and verify test event exports; ingest events.

>>> from examtrail_client import ExamtrailClient, read_export  # doctest: +SKIP
>>> with ExamtrailClient("http://127.0.0.1:8000", CLIENT_ID, API_KEY) as et:  # doctest: +SKIP
...     result = et.export(1001, "events.json")
>>> for candidate, event in read_export("events.json"):  # doctest: +SKIP
...     print(candidate.user_id, event["event"])
"""

from examtrail_client._common import export_params
from examtrail_client.aio import AsyncExamtrailClient
from examtrail_client.client import ExamtrailClient
from examtrail_client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    ExamtrailError,
    ExportFailedError,
    NotFoundError,
    ServerUnreachableError,
    VerificationError,
)
from examtrail_client.files import iter_export, read_export
from examtrail_client.models import (
    Candidate,
    DownloadResult,
    ExportJob,
    IngestProgress,
    IngestReport,
    RejectedEvent,
)
from examtrail_client.webhooks import verify_webhook

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncExamtrailClient",
    "AuthenticationError",
    "Candidate",
    "ConflictError",
    "DownloadResult",
    "ExamtrailClient",
    "ExamtrailError",
    "ExportFailedError",
    "ExportJob",
    "IngestProgress",
    "IngestReport",
    "NotFoundError",
    "RejectedEvent",
    "ServerUnreachableError",
    "VerificationError",
    "__version__",
    "export_params",
    "iter_export",
    "read_export",
    "verify_webhook",
]
