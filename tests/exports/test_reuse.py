"""An export handed to a second caller (a finished one reused, a queued or running one joined):
its file and every attachment link in it stay valid as long as that caller's token, as
they do for the caller who ordered it (the Inspera contract)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from examtrail.auth.models import Tenant
from examtrail.core.db import transaction, utcnow
from examtrail.core.security import Principal
from examtrail.exports import repository, service
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.lifecycle.service import sweep_retention
from examtrail.runtime import Runtime
from tests.support.api import create_client, fetch, mint_token, seed_test, wait_for_job

TEST_ID = 42


def _seed(http: TestClient, headers: dict[str, str]) -> None:
    """One candidate, two events, a file on the first: the export holds one attachment link."""
    seed_test(http, headers, TEST_ID, candidates=1, events_per_candidate=2)
    url = f"/v1/test/{TEST_ID}/candidates/100/events/e-100-0/files/shot.png"
    uploaded = http.put(url, content=b"evidence", headers={**headers, "Content-Type": "image/png"})
    assert uploaded.status_code in (200, 201), uploaded.text


def _order(http: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    ordered = http.post(f"/v1/test/{TEST_ID}/events", headers=headers)
    assert ordered.status_code == 202, ordered.text
    body: dict[str, Any] = ordered.json()
    return body


def _export(http: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    status = wait_for_job(http, headers, TEST_ID, _order(http, headers)["jobId"])
    assert status["status"] == "finished", status
    return status


def _expiry(url: str) -> int:
    """When a link expires (Unix seconds): the local store's ``expires``, or S3's signing
    time plus ``X-Amz-Expires``."""
    query = parse_qs(urlsplit(url).query)
    if "expires" in query:
        return int(query["expires"][0])
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return int(signed.timestamp()) + int(query["X-Amz-Expires"][0])


def _attachment_links(document: bytes) -> list[str]:
    doc = json.loads(document)
    return [f["presignedUrl"] for c in doc["candidates"] for e in c["events"] for f in e["attachedFiles"]]


def _links_outlive_download(http: TestClient, status: dict[str, Any]) -> None:
    """Every attachment link in the file lasts as long as the download link (1 s of rounding)."""
    links = _attachment_links(fetch(http, status["downloadUrl"]).content)
    assert links
    assert min(_expiry(link) for link in links) >= _expiry(status["downloadUrl"]) - 1


def test_a_finished_export_is_reused_only_while_its_links_outlive_the_token(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    _seed(http, headers)
    client_id, _ = create_client(runtime)
    short = mint_token(runtime, client_id, ttl_seconds=720)  # issued 48 minutes ago, say
    first = _export(http, short)
    _links_outlive_download(http, first)
    # The same token again: its links still outlive it, the file is handed out again.
    assert _order(http, short)["jobId"] == first["jobId"]
    # A fresh token outlives the file's links (12 minutes): a new export, links for an hour.
    fresh = mint_token(runtime, client_id, ttl_seconds=3600)
    second = _export(http, fresh)
    assert second["jobId"] != first["jobId"]
    _links_outlive_download(http, second)
    # Which any token expiring before its links may share.
    again = _order(http, short)
    assert again["jobId"] == second["jobId"] and again["status"] == "finished"
    _links_outlive_download(http, again)


def _principal(runtime: Runtime, minutes: int) -> Principal:
    with runtime.sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == "uni-a"))
    assert tenant_id is not None
    expires = utcnow().replace(microsecond=0) + timedelta(minutes=minutes)
    return Principal(tenant_id, f"client-{minutes}", frozenset({"export"}), expires)


def _order_quietly(runtime: Runtime, principal: Principal) -> service.Ordered:
    """Ordered but never enqueued: the test plays the worker."""
    with transaction(runtime.sessions) as session:
        return service.order_export(session, principal, TEST_ID, reuse=True, retention_days=0)


def _job(runtime: Runtime, job_id: str) -> ExportJob:
    with runtime.sessions() as session:
        job = repository.load_job(session, job_id)
    assert job is not None
    return job


def _ordered_by_a_short_token(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> tuple[Principal, Principal, service.Ordered]:
    """Callers whose tokens end in 12 and in 60 minutes; the first has ordered an export."""
    _seed(http, headers)
    early, late = _principal(runtime, 12), _principal(runtime, 60)
    return early, late, _order_quietly(runtime, early)


def test_joining_a_queued_export_extends_the_links_it_will_write(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    early, late, first = _ordered_by_a_short_token(http, runtime, headers)
    assert first.created and _job(runtime, first.job.id).links_expire_at == early.expires_at
    joined = _order_quietly(runtime, late)
    assert not joined.created and joined.job.id == first.job.id
    assert joined.job.links_expire_at == late.expires_at
    # A caller whose token ends sooner joins too, and never shortens the links.
    assert _order_quietly(runtime, early).job.id == first.job.id
    assert _job(runtime, first.job.id).links_expire_at == late.expires_at

    service.run_job(runtime, first.job.id)
    done = _job(runtime, first.job.id)
    assert done.status == JobStatus.FINISHED and done.storage_key
    document = b"".join(runtime.store.open_read(done.storage_key))
    links = _attachment_links(document)
    assert links and min(_expiry(link) for link in links) >= int(late.expires_at.timestamp()) - 1


def test_a_running_export_is_joined_only_when_its_links_cover_the_token(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    early, late, first = _ordered_by_a_short_token(http, runtime, headers)
    with transaction(runtime.sessions) as session:
        assert repository.claim(session, first.job.id, "worker-x", utcnow(), timedelta(minutes=5))
    # Its links are being written with the first token's expiry: too late to raise it.
    with transaction(runtime.sessions) as session:
        assert not repository.extend_links(session, first.job.id, late.expires_at)
    assert _job(runtime, first.job.id).links_expire_at == early.expires_at
    second = _order_quietly(runtime, late)
    assert second.created and second.job.id != first.job.id
    assert second.job.links_expire_at == late.expires_at
    # Running or queued, a job whose links outlive the caller's token is shared.
    with transaction(runtime.sessions) as session:
        assert repository.claim(session, second.job.id, "worker-y", utcnow(), timedelta(minutes=5))
    assert _order_quietly(runtime, early).job.id == second.job.id
    assert _job(runtime, second.job.id).links_expire_at == late.expires_at


def test_a_running_export_without_files_is_joined_whatever_the_token(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """No evidence file in the test, no link in the file that could expire before a newer
    token: a running export is shared rather than written a second time."""
    seed_test(http, headers, TEST_ID, candidates=1, events_per_candidate=2)
    early, late = _principal(runtime, 12), _principal(runtime, 60)
    first = _order_quietly(runtime, early)
    with transaction(runtime.sessions) as session:
        assert repository.claim(session, first.job.id, "worker-x", utcnow(), timedelta(minutes=5))
    joined = _order_quietly(runtime, late)
    assert not joined.created and joined.job.id == first.job.id


def test_a_file_uploaded_after_joining_a_running_export_makes_it_written_again(
    http: TestClient, runtime: Runtime, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller joins a running export because the test has no files; before the worker opens
    its snapshot a file arrives, and would be linked with the first caller's shorter expiry.
    The worker hands the job back instead of publishing, and the next attempt's links last
    as long as the joining caller's token."""
    seed_test(http, headers, TEST_ID, candidates=1, events_per_candidate=2)
    early, late = _principal(runtime, 12), _principal(runtime, 60)
    first = _order_quietly(runtime, early)
    open_writer = runtime.store.open_writer
    joined: list[service.Ordered] = []

    def join_and_upload_first(key: str, **kwargs: Any) -> Any:
        # Claimed, snapshot not open yet: the caller joins, then a file is uploaded.
        if not joined:
            joined.append(_order_quietly(runtime, late))
            url = f"/v1/test/{TEST_ID}/candidates/100/events/e-100-0/files/shot.png"
            uploaded = http.put(url, content=b"evidence", headers={**headers, "Content-Type": "image/png"})
            assert uploaded.status_code == 201, uploaded.text
        return open_writer(key, **kwargs)

    monkeypatch.setattr(runtime.store, "open_writer", join_and_upload_first)
    service.run_job(runtime, first.job.id)
    assert joined and not joined[0].created and joined[0].job.id == first.job.id
    handed_back = _job(runtime, first.job.id)
    assert handed_back.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FINISHED)
    assert handed_back.links_expire_at == late.expires_at

    service.run_job(runtime, first.job.id)  # (a no-op if the queue's worker ran it already)
    status = wait_for_job(http, headers, TEST_ID, first.job.id)
    done = _job(runtime, first.job.id)
    assert status["status"] == "finished" and done.attempts == 1, status  # the rewrite is not a failure
    assert done.storage_key is not None
    links = _attachment_links(b"".join(runtime.store.open_read(done.storage_key)))
    assert links and min(_expiry(link) for link in links) >= int(late.expires_at.timestamp()) - 1
    # Only the published file remains of the job.
    assert [key for key in runtime.store.list_keys("exports/") if first.job.id in key] == [done.storage_key]


@pytest.mark.settings(export_retention_days=30)
def test_a_finished_export_is_reused_only_while_retention_keeps_it_past_the_token(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    seed_test(http, headers, TEST_ID, candidates=1, events_per_candidate=1)
    first = _export(http, headers)

    def finished(ago: timedelta) -> None:
        with transaction(runtime.sessions) as session:
            session.execute(
                update(ExportJob).where(ExportJob.id == first["jobId"]).values(finished_at=utcnow() - ago)
            )

    # Retention deletes it in two hours: it outlives the token (an hour), so it is reused.
    finished(timedelta(days=30) - timedelta(hours=2))
    assert _order(http, headers)["jobId"] == first["jobId"]
    # In 30 minutes: a link for an hour would answer 404 after the sweep; a new export.
    finished(timedelta(days=30) - timedelta(minutes=30))
    second = _export(http, headers)
    assert second["jobId"] != first["jobId"]
    # The sweep, once the old file is due, takes it and leaves the new one downloadable.
    finished(timedelta(days=30, minutes=1))
    assert sweep_retention(runtime) == 1
    assert fetch(http, second["downloadUrl"]).status_code == 200
    assert (
        http.get(f"/v1/test/{TEST_ID}/events/{first['jobId']}", headers=headers).json()["status"] == "expired"
    )


def test_the_status_says_when_the_files_links_expire(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """A file is immutable: polled with a newer token, its download link is new, but the
    evidence-file links inside it keep the expiry they were written with, and the status says so."""
    _seed(http, headers)
    client_id, _ = create_client(runtime)
    short = mint_token(runtime, client_id, ttl_seconds=720)
    first = _export(http, short)
    links = _attachment_links(fetch(http, first["downloadUrl"]).content)
    written = _parse_ts(first["attachmentLinksExpire"])
    assert abs(written - min(_expiry(link) for link in links)) <= 1

    fresh = mint_token(runtime, client_id, ttl_seconds=3600)
    polled = http.get(f"/v1/test/{TEST_ID}/events", params={"jobId": first["jobId"]}, headers=fresh).json()
    assert polled["attachmentLinksExpire"] == first["attachmentLinksExpire"]
    assert _parse_ts(polled["downloadUrlExpires"]) > written + 2400  # the link is the new token's

    # A file without evidence-file links has none to expire.
    seed_test(http, headers, TEST_ID + 1, candidates=1, events_per_candidate=1)
    ordered = http.post(f"/v1/test/{TEST_ID + 1}/events", headers=headers).json()
    plain = wait_for_job(http, headers, TEST_ID + 1, ordered["jobId"])
    assert plain["status"] == "finished" and plain["attachmentLinksExpire"] is None


def _parse_ts(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
