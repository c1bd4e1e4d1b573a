"""The audited actions: stable dotted names, stored as such and used as the API's filter enum.

Never rename one (stored rows and clients' filters use them); add new ones at the end.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    CLIENT_CREATED = "client.created"
    CLIENT_REVOKED = "client.revoked"
    TOKEN_ISSUED = "token.issued"  # noqa: S105 (an action name)
    EVENTS_INGESTED = "events.ingested"
    FILE_UPLOADED = "file.uploaded"
    EXPORT_ORDERED = "export.ordered"
    EXPORT_LINK_ISSUED = "export.link_issued"
    DOWNLOAD_SERVED = "download.served"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_DELETED = "subscription.deleted"
    # Erasure and retention (written by that feature through ``audit.service.record``).
    CANDIDATE_ERASED = "candidate.erased"
    TEST_ERASED = "test.erased"
    EXPORT_EXPIRED = "export.expired"
    HOLD_SET = "hold.set"
    HOLD_RELEASED = "hold.released"
    # The service's keys (``examtrail keys``): recorded in every tenant's log, since they
    # change what signs and seals that tenant's data.
    SIGNING_KEY_ROTATED = "signing_key.rotated"
    SECRETS_RESEALED = "secrets.resealed"
    # Added later (new names go at the end).
    ATTACHMENT_LINK_ISSUED = "attachment.link_issued"
    TEST_CREATED = "test.created"
    TEST_UPDATED = "test.updated"
    CANDIDATES_UPDATED = "candidates.updated"
    EXPORT_CANCELLED = "export.cancelled"
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    ERASURE_RESTARTED = "erasure.restarted"


CLIENT_CREATED = Action.CLIENT_CREATED
CLIENT_REVOKED = Action.CLIENT_REVOKED
TOKEN_ISSUED = Action.TOKEN_ISSUED
EVENTS_INGESTED = Action.EVENTS_INGESTED
FILE_UPLOADED = Action.FILE_UPLOADED
EXPORT_ORDERED = Action.EXPORT_ORDERED
EXPORT_LINK_ISSUED = Action.EXPORT_LINK_ISSUED
DOWNLOAD_SERVED = Action.DOWNLOAD_SERVED
SUBSCRIPTION_CREATED = Action.SUBSCRIPTION_CREATED
SUBSCRIPTION_DELETED = Action.SUBSCRIPTION_DELETED
CANDIDATE_ERASED = Action.CANDIDATE_ERASED
TEST_ERASED = Action.TEST_ERASED
EXPORT_EXPIRED = Action.EXPORT_EXPIRED
HOLD_SET = Action.HOLD_SET
HOLD_RELEASED = Action.HOLD_RELEASED
SIGNING_KEY_ROTATED = Action.SIGNING_KEY_ROTATED
SECRETS_RESEALED = Action.SECRETS_RESEALED
ATTACHMENT_LINK_ISSUED = Action.ATTACHMENT_LINK_ISSUED
TEST_CREATED = Action.TEST_CREATED
TEST_UPDATED = Action.TEST_UPDATED
CANDIDATES_UPDATED = Action.CANDIDATES_UPDATED
EXPORT_CANCELLED = Action.EXPORT_CANCELLED
WEBHOOK_REDELIVERED = Action.WEBHOOK_REDELIVERED
ERASURE_RESTARTED = Action.ERASURE_RESTARTED

# What an entry is about (``object_type``).
OBJECT_CLIENT = "client"
OBJECT_TEST = "test"
OBJECT_CANDIDATE = "candidate"
OBJECT_ATTACHMENT = "attachment"
OBJECT_EXPORT = "export"
OBJECT_SUBSCRIPTION = "subscription"
OBJECT_DELIVERY = "delivery"
OBJECT_ERASURE = "erasure"
OBJECT_SIGNING_KEY = "signing_key"
OBJECT_SECRET_KEY = "secret_key"  # noqa: S105 (an object type; the object id is the key's public id)

# ``client_id`` of actions taken on the command line (API client ids start with ``et_``).
CLI_ACTOR = "cli"
