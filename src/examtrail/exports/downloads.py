"""Auditing downloads served by the local object store's signed links (embedded deployment).

``storage/api.py`` serves the links but sits below the features, so it knows neither tenants
nor what a key holds: it calls the hook the application's top installs, which is this. Exports
knows its own file keys and, through ingest, the attachments' (the links inside export files).
A download is recorded before its first byte is sent, in its own short transaction: if the
entry cannot be written the file is not served. On S3 the object store serves links itself and
no download is seen (the issued link is audited instead: ``export.link_issued``).
"""

from __future__ import annotations

from examtrail.audit import actions
from examtrail.audit.service import record
from examtrail.core.db import transaction
from examtrail.exports import service
from examtrail.ingest.service import attachment_of_key
from examtrail.runtime import Runtime
from examtrail.storage.api import DownloadHook


def download_auditor(runtime: Runtime) -> DownloadHook:
    def served(key: str, size: int, byte_range: str | None) -> None:
        details: dict[str, object] = {"fileSize": size}
        if byte_range:
            details["range"] = byte_range[:100]
        with transaction(runtime.sessions) as session:
            job = service.job_of_key(session, key)
            if job is not None:
                details["jobId"] = job.id
                record(
                    session,
                    tenant_id=job.tenant_id,
                    client_id=None,  # links carry no credentials: whoever holds one downloads
                    action=actions.DOWNLOAD_SERVED,
                    object_type=actions.OBJECT_EXPORT,
                    object_id=job.id,
                    test_id=job.test_external_id,
                    details=details,
                )
                return
            attachment = attachment_of_key(session, key)
            if attachment is not None:
                tenant_id, content_item_id, test_id = attachment
                details["contentItemId"] = content_item_id
                record(
                    session,
                    tenant_id=tenant_id,
                    client_id=None,
                    action=actions.DOWNLOAD_SERVED,
                    object_type=actions.OBJECT_ATTACHMENT,
                    object_id=content_item_id,
                    test_id=test_id,
                    details=details,
                )

    return served
