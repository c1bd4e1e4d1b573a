"""Every audited action writes exactly one entry with the right fields, in the action's own
transaction; a failed action writes none. Runs on both deployments."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.auth import service as auth_service
from examtrail.auth.models import Tenant
from examtrail.core.db import transaction
from examtrail.runtime import Runtime
from tests.audit.conftest import Log, details, only
from tests.support.api import bearer, create_client, fetch, get_token, seed_test, tamper, wait_for_job
from tests.support.receiver import Receiver

RID = "audit-req-0001"
SOURCE_IP = "testclient"  # Starlette's TestClient address


def _client(http: TestClient, runtime: Runtime, scopes: str = "ingest,export") -> tuple[str, dict[str, str]]:
    client_id, key = create_client(runtime, "uni-a", scopes)
    return client_id, bearer(get_token(http, client_id, key))


def _with_id(headers: dict[str, str], request_id: str = RID) -> dict[str, str]:
    return {**headers, "X-Request-ID": request_id}


def _tenant_id(runtime: Runtime, name: str = "uni-a") -> int:
    with runtime.sessions() as session:
        return session.scalars(select(Tenant.id).where(Tenant.name == name)).one()


def test_client_created_and_revoked(runtime: Runtime, audit_log: Log) -> None:
    client_id, _ = create_client(runtime, "uni-a", "export")
    created = only(audit_log.rows("client.created"))
    assert (created.object_type, created.object_id, created.client_id) == ("client", client_id, "cli")
    assert created.tenant_id == _tenant_id(runtime)
    assert details(created) == {"scopes": ["export"]}
    assert created.request_id is None and created.source_ip is None  # not an HTTP request

    with transaction(runtime.sessions) as session:
        assert auth_service.revoke_client(session, client_id)
    revoked = only(audit_log.rows("client.revoked"))
    assert (revoked.object_id, revoked.client_id) == (client_id, "cli")

    # Failed actions: an unknown scope, revoking again.
    mark = audit_log.mark()
    with pytest.raises(ValueError), transaction(runtime.sessions) as session:
        auth_service.create_client(session, tenant_name="uni-a", scopes=frozenset({"admin"}))
    with transaction(runtime.sessions) as session:
        assert not auth_service.revoke_client(session, client_id)
    assert audit_log.since(mark) == []


def test_token_issued_names_the_client_never_the_token(
    http: TestClient, runtime: Runtime, audit_log: Log
) -> None:
    client_id, key = create_client(runtime, "uni-a", "ingest")
    mark = audit_log.mark()
    response = http.post(
        f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}",
        headers={"code": key, "X-Request-ID": RID},
    )
    assert response.status_code == 200
    row = only(audit_log.since(mark))
    assert row.action == "token.issued"
    assert (row.client_id, row.object_type, row.object_id) == (client_id, "client", client_id)
    assert (row.request_id, row.source_ip) == (RID, SOURCE_IP)
    assert row.tenant_id == _tenant_id(runtime)
    assert response.json()["access_token"] not in (row.details or "")
    assert key not in (row.details or "")
    assert details(row)["scopes"] == ["ingest"]

    mark = audit_log.mark()
    oauth = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": key},
    )
    assert oauth.status_code == 200
    assert only(audit_log.since(mark)).action == "token.issued"

    # 401s and 400s write nothing.
    mark = audit_log.mark()
    url = f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}"
    assert http.post(url, headers={"code": "etk_wrong"}).status_code == 401
    assert http.post(url).status_code == 401
    assert http.post("/api/authenticate/token/?grant_type=nope", headers={"code": key}).status_code == 400
    wrong = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
    assert http.post("/oauth/token", data=wrong).status_code == 401
    assert audit_log.since(mark) == []


def _events(prefix: str, n: int) -> list[dict[str, object]]:
    return [
        {"eventId": f"{prefix}-{i}", "event": "network_lost", "timeStamp": f"2026-06-01T09:00:0{i}.000Z"}
        for i in range(n)
    ]


def test_events_ingested_one_entry_per_batch_with_counts(
    http: TestClient, runtime: Runtime, audit_log: Log
) -> None:
    client_id, headers = _client(http, runtime)
    assert http.put("/v1/test/7", json={"title": "T"}, headers=headers).status_code == 201
    people = [{"userId": 70, "candidateId": "c70"}]
    assert http.put("/v1/test/7/candidates", json=people, headers=headers).status_code == 200
    url = "/v1/test/7/candidates/70/events"

    mark = audit_log.mark()
    assert http.post(url, json=_events("a", 3), headers=_with_id(headers)).status_code == 201
    row = only(audit_log.since(mark))
    assert row.action == "events.ingested"
    assert (row.client_id, row.object_type, row.object_id, row.test_id) == (client_id, "test", "7", 7)
    assert (row.request_id, row.source_ip) == (RID, SOURCE_IP)
    assert details(row) == {"received": 3, "created": 3, "duplicates": 0}
    assert "network_lost" not in (row.details or "")  # no event content

    # The same batch again: accepted (200), nothing new, still one entry.
    mark = audit_log.mark()
    assert http.post(url, json=_events("a", 3), headers=headers).status_code == 200
    assert details(only(audit_log.since(mark))) == {"received": 3, "created": 0, "duplicates": 3}

    # Refused batches write nothing: 422, 409, 404.
    mark = audit_log.mark()
    assert http.post(url, json=[{"event": "x"}], headers=headers).status_code == 422
    conflicting = [{**_events("a", 1)[0], "event": "other"}]
    assert http.post(url, json=conflicting, headers=headers).status_code == 409
    assert (
        http.post("/v1/test/7/candidates/71/events", json=_events("b", 1), headers=headers).status_code == 404
    )
    assert (
        http.post("/v1/test/8/candidates/70/events", json=_events("b", 1), headers=headers).status_code == 404
    )
    assert audit_log.since(mark) == []


@pytest.mark.settings(max_file_bytes=1000)
def test_file_uploaded(http: TestClient, runtime: Runtime, audit_log: Log) -> None:
    client_id, headers = _client(http, runtime)
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    url = "/v1/test/9/candidates/100/events/e-100-0/files/photo-of-someone.png"

    mark = audit_log.mark()
    response = http.put(url, content=b"png" * 10, headers=_with_id({**headers, "Content-Type": "image/png"}))
    assert response.status_code == 201, response.text
    row = only(audit_log.since(mark))
    assert row.action == "file.uploaded"
    assert (row.client_id, row.object_type, row.test_id) == (client_id, "attachment", 9)
    assert row.object_id == str(response.json()["contentItemId"])
    assert (row.request_id, row.source_ip) == (RID, SOURCE_IP)
    assert details(row)["fileSize"] == 30 and details(row)["created"] is True
    assert "photo-of-someone" not in (row.details or "")

    mark = audit_log.mark()
    # The same bytes again: idempotent (200), one entry; other bytes: 409 and none (below).
    assert http.put(url, content=b"png" * 10, headers=headers).status_code == 200
    assert details(only(audit_log.since(mark)))["created"] is False

    mark = audit_log.mark()
    assert http.put(url, content=b"x", headers=headers).status_code == 409
    assert http.put(url, content=b"x" * 2000, headers=headers).status_code == 413
    assert http.put(url.replace("e-100-0", "nope"), content=b"x", headers=headers).status_code == 404
    assert (
        http.put(url, content=b"x", headers={**headers, "Content-Type": "multipart/form-data"}).status_code
        == 415
    )
    assert audit_log.since(mark) == []


def test_export_ordered_link_issued_and_download_served(
    http: TestClient, runtime: Runtime, audit_log: Log
) -> None:
    client_id, headers = _client(http, runtime)
    seed_test(http, headers, test_id=11)

    # Refused orders write nothing.
    mark = audit_log.mark()
    assert http.post("/v1/test/12/events", headers=headers).status_code == 404
    assert http.post("/v1/test/11/events?format=xml", headers=headers).status_code == 422
    assert audit_log.since(mark) == []

    mark = audit_log.mark()
    order = http.post("/v1/test/11/events?format=jsonl", headers=_with_id(headers))
    assert order.status_code == 202
    job_id = order.json()["jobId"]
    row = only(audit_log.since(mark))
    assert row.action == "export.ordered"
    assert (row.client_id, row.object_type, row.object_id, row.test_id) == (client_id, "export", job_id, 11)
    assert (row.request_id, row.source_ip) == (RID, SOURCE_IP)
    assert details(row) == {
        "jobId": job_id,
        "created": True,
        "status": "queued",
        "options": {"format": "jsonl"},
    }

    # Polling: only the answer that carries a link is audited, once.
    mark = audit_log.mark()
    status = wait_for_job(http, headers, 11, job_id)
    assert status["status"] == "finished"
    linked = only(audit_log.since(mark))
    assert linked.action == "export.link_issued"
    assert details(linked) == {"jobId": job_id, "expires": status["downloadUrlExpires"]}

    # Each further status call with a link: exactly one more entry.
    mark = audit_log.mark()
    again = http.get(f"/v1/test/11/events/{job_id}", headers=_with_id(headers, "poll-2"))
    assert again.status_code == 200
    row = only(audit_log.since(mark))
    assert (row.action, row.object_id, row.request_id, row.client_id) == (
        "export.link_issued",
        job_id,
        "poll-2",
        client_id,
    )
    # The job list hands out one link per finished job.
    mark = audit_log.mark()
    assert http.get("/v1/test/11/events/jobs", headers=headers).status_code == 200
    assert only(audit_log.since(mark)).action == "export.link_issued"

    # Ordering the same again (nothing new): the finished job with a fresh link, two actions.
    mark = audit_log.mark()
    reused = http.post("/v1/test/11/events?format=jsonl", headers=headers)
    assert reused.json()["jobId"] == job_id and reused.json()["downloadUrl"]
    rows = audit_log.since(mark)
    assert [r.action for r in rows] == ["export.ordered", "export.link_issued"]
    assert details(rows[0])["created"] is False

    # A tampered link is refused and writes nothing; the real one is served (local store)
    # and audited. On S3 the object store serves it: the issued link is the record.
    url = again.json()["downloadUrl"]
    mark = audit_log.mark()
    assert fetch(http, tamper(url)).status_code == 403
    assert audit_log.since(mark) == []
    downloaded = fetch(http, url, headers={"X-Request-ID": "dl-1"})
    assert downloaded.status_code == 200
    served = audit_log.since(mark)
    if runtime.settings.storage == "local":
        row = only(served)
        assert (row.action, row.object_type, row.object_id, row.test_id) == (
            "download.served",
            "export",
            job_id,
            11,
        )
        assert (row.client_id, row.request_id, row.source_ip) == (None, "dl-1", SOURCE_IP)
        assert details(row) == {"fileSize": len(downloaded.content), "jobId": job_id}
        # A HEAD is not a download.
        mark = audit_log.mark()
        assert http.head(url.removeprefix("http://testserver")).status_code == 200
        assert audit_log.since(mark) == []
    else:
        assert served == []


def test_attachment_download_served_on_the_local_store(
    http: TestClient, runtime: Runtime, audit_log: Log
) -> None:
    if runtime.settings.storage != "local":
        pytest.skip("the local store serves its links; S3 serves its own")
    _, headers = _client(http, runtime)
    seed_test(http, headers, test_id=13, candidates=1, events_per_candidate=1)
    put = http.put("/v1/test/13/candidates/100/events/e-100-0/files/a.txt", content=b"hello", headers=headers)
    assert put.status_code == 201
    job_id = http.post("/v1/test/13/events", headers=headers).json()["jobId"]
    status = wait_for_job(http, headers, 13, job_id)
    export = fetch(http, status["downloadUrl"]).json()
    link = export["candidates"][0]["events"][0]["attachedFiles"][0]["presignedUrl"]
    mark = audit_log.mark()
    assert fetch(http, link).content == b"hello"
    row = only(audit_log.since(mark))
    assert (row.action, row.object_type, row.test_id) == ("download.served", "attachment", 13)
    assert row.object_id == str(put.json()["contentItemId"])


def test_subscription_created_and_deleted(
    http: TestClient, runtime: Runtime, audit_log: Log, receiver: Receiver
) -> None:
    client_id, headers = _client(http, runtime)
    body = {"event": "event_by_candidates_export_finished", "endpoint": receiver.url() + "?token=s3cret"}

    mark = audit_log.mark()
    created = http.post("/v1/subscription", json=body, headers=_with_id(headers))
    assert created.status_code == 201, created.text
    subscription_id = created.json()["subscriptionId"]
    row = only(audit_log.since(mark))
    assert row.action == "subscription.created"
    assert (row.client_id, row.object_type, row.object_id) == (client_id, "subscription", subscription_id)
    assert (row.request_id, row.source_ip) == (RID, SOURCE_IP)  # recorded on the verification thread
    assert details(row) == {"event": body["event"], "endpointHost": "127.0.0.1"}
    assert created.json()["secret"] not in (row.details or "") and "s3cret" not in (row.details or "")

    # Refused: a duplicate (409), a failing verification (400).
    mark = audit_log.mark()
    assert http.post("/v1/subscription", json=body, headers=headers).status_code == 409
    receiver.configure("/other", status=500)
    other = {**body, "endpoint": receiver.url("/other")}
    assert http.post("/v1/subscription", json=other, headers=headers).status_code == 400
    assert audit_log.since(mark) == []

    mark = audit_log.mark()
    assert http.delete(f"/v1/subscription/{subscription_id}", headers=headers).status_code == 204
    row = only(audit_log.since(mark))
    assert (row.action, row.object_id, row.client_id) == ("subscription.deleted", subscription_id, client_id)
    mark = audit_log.mark()
    assert http.delete(f"/v1/subscription/{subscription_id}", headers=headers).status_code == 404
    assert audit_log.since(mark) == []


def test_a_notification_link_is_issued_by_the_service(
    http: TestClient, runtime: Runtime, audit_log: Log, receiver: Receiver
) -> None:
    _, headers = _client(http, runtime)
    body = {"event": "event_by_candidates_export_finished", "endpoint": receiver.url()}
    subscription_id = http.post("/v1/subscription", json=body, headers=headers).json()["subscriptionId"]
    seed_test(http, headers, test_id=14, candidates=1, events_per_candidate=1)
    job_id = http.post("/v1/test/14/events", headers=headers).json()["jobId"]
    receiver.wait_for(lambda requests: any(r.event == body["event"] for r in requests), timeout=60)
    rows = [r for r in audit_log.rows("export.link_issued") if r.client_id is None]
    row = only(rows)
    assert (row.object_id, row.test_id, row.request_id) == (job_id, 14, None)
    assert details(row)["subscriptionId"] == subscription_id


def test_test_and_candidate_changes_are_audited_without_names(
    http: TestClient, runtime: Runtime, audit_log: Log
) -> None:
    client_id, headers = _client(http, runtime)
    mark = audit_log.mark()
    assert http.put("/v1/test/7", json={"title": "T"}, headers=_with_id(headers)).status_code == 201
    row = only(audit_log.since(mark))
    assert (row.action, row.client_id, row.object_type, row.object_id, row.test_id) == (
        "test.created",
        client_id,
        "test",
        "7",
        7,
    )
    assert row.request_id == RID

    mark = audit_log.mark()
    assert http.put("/v1/test/7", json={"title": "Renamed"}, headers=headers).status_code == 200
    assert http.put("/v1/test/7", json={"title": "Renamed"}, headers=headers).status_code == 200
    renamed, same = audit_log.since(mark)
    assert (renamed.action, details(renamed)) == ("test.updated", {"renamed": True})
    assert (same.action, details(same)) == ("test.updated", {"renamed": False})
    assert "Renamed" not in (renamed.details or "")

    mark = audit_log.mark()
    people = [{"userId": 70, "candidateId": "Jane-Doe-1990"}, {"userId": 71, "candidateId": "c71"}]
    assert http.put("/v1/test/7/candidates", json=people, headers=headers).status_code == 200
    people[0]["candidateId"] = "Jane-Roe-1990"
    assert http.put("/v1/test/7/candidates", json=people, headers=headers).status_code == 200
    added, changed = audit_log.since(mark)
    assert (added.action, added.object_type, added.object_id, added.test_id) == (
        "candidates.updated",
        "test",
        "7",
        7,
    )
    assert details(added) == {"received": 2, "created": 2, "updated": 0}
    assert details(changed) == {"received": 2, "created": 0, "updated": 1}
    assert all("Jane" not in (row.details or "") for row in audit_log.rows())

    # Refused: nothing recorded.
    mark = audit_log.mark()
    contradicting = [{"userId": 72, "candidateId": "a"}, {"userId": 72, "candidateId": "b"}]
    assert http.put("/v1/test/7/candidates", json=contradicting, headers=headers).status_code == 422
    assert http.put("/v1/test/8/candidates", json=people, headers=headers).status_code == 404
    assert audit_log.since(mark) == []

    # Ingest stays one entry per request, never one per event.
    mark = audit_log.mark()
    assert (
        http.post("/v1/test/7/candidates/70/events", json=_events("z", 10), headers=headers).status_code
        == 201
    )
    assert only(audit_log.since(mark)).action == "events.ingested"


def test_export_cancelled(http: TestClient, runtime: Runtime, audit_log: Log) -> None:
    from tests.exports.test_export_api import hold_queued_job

    client_id, headers = _client(http, runtime)
    seed_test(http, headers, test_id=14)
    job_id = hold_queued_job(runtime, 14)
    mark = audit_log.mark()
    cancelled = http.delete("/v1/test/14/events", params={"jobId": job_id}, headers=_with_id(headers))
    assert cancelled.status_code == 200
    row = only(audit_log.since(mark))
    assert (row.action, row.client_id, row.object_type, row.object_id, row.test_id) == (
        "export.cancelled",
        client_id,
        "export",
        job_id,
        14,
    )
    assert details(row) == {"jobId": job_id, "was": "queued"}
    mark = audit_log.mark()
    assert http.delete(f"/v1/test/14/events/{job_id}", headers=headers).status_code == 409
    assert audit_log.since(mark) == []


def test_webhook_redelivered(http: TestClient, runtime: Runtime, audit_log: Log, receiver: Receiver) -> None:
    from tests.webhooks.helpers import wait_for_delivery

    client_id, headers = _client(http, runtime)
    body = {"event": "event_by_candidates_export_finished", "endpoint": receiver.url()}
    subscription_id = http.post("/v1/subscription", json=body, headers=headers).json()["subscriptionId"]
    seed_test(http, headers, test_id=14, candidates=1, events_per_candidate=1)
    job_id = http.post("/v1/test/14/events", headers=headers).json()["jobId"]
    delivery = wait_for_delivery(http, headers, subscription_id, "succeeded")
    mark = audit_log.mark()
    url = f"/v1/subscription/{subscription_id}/deliveries/{delivery['deliveryId']}/redeliver"
    assert http.post(url, headers=_with_id(headers)).status_code == 202
    row = next(r for r in audit_log.since(mark) if r.action == "webhook.redelivered")
    assert (row.client_id, row.object_type, row.object_id, row.test_id) == (
        client_id,
        "delivery",
        delivery["deliveryId"],
        14,
    )
    assert details(row) == {
        "subscriptionId": subscription_id,
        "deliveryId": delivery["deliveryId"],
        "jobId": job_id,
    }
    mark = audit_log.mark()
    assert http.post(url.replace(delivery["deliveryId"], "0" * 36), headers=headers).status_code in (404, 422)
    # (the redelivered notification's own link may land meanwhile: the service's entry)
    assert [r for r in audit_log.since(mark) if r.action == "webhook.redelivered"] == []
