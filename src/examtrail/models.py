"""Imports every feature's models so metadata (and Alembic) sees all tables."""

from examtrail.audit.models import AuditEntry
from examtrail.auth.models import ApiClient, Tenant
from examtrail.exports.models import ExportJob
from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiClient",
    "Attachment",
    "AuditEntry",
    "Candidate",
    "Event",
    "ExportJob",
    "Tenant",
    "Test",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
