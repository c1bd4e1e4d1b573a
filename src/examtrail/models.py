"""Imports every feature's models so metadata (and Alembic) sees all tables."""

from examtrail.audit.models import AuditEntry
from examtrail.auth.models import ApiClient, Tenant
from examtrail.exports.models import ExportJob, PseudonymKey
from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.lifecycle.models import ErasureJob, LegalHold
from examtrail.signing.models import SigningKey
from examtrail.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiClient",
    "Attachment",
    "AuditEntry",
    "Candidate",
    "ErasureJob",
    "Event",
    "ExportJob",
    "LegalHold",
    "PseudonymKey",
    "SigningKey",
    "Tenant",
    "Test",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
