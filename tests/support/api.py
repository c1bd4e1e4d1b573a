"""Helpers to talk to the API like a client would."""

from __future__ import annotations

import time
from typing import Any

import httpx

from examtrail.auth import repository as auth_repository
from examtrail.auth import service as auth_service
from examtrail.core import security
from examtrail.core.db import transaction
from examtrail.runtime import Runtime


def create_client(runtime: Runtime, tenant: str = "uni-a", scopes: str = "ingest,export") -> tuple[str, str]:
    with transaction(runtime.sessions) as session:
        created = auth_service.create_client(
            session, tenant_name=tenant, scopes=frozenset(scopes.split(",")), name="test"
        )
    return created.client_id, created.api_key


def get_token(http: httpx.Client | Any, client_id: str, api_key: str) -> str:
    response = http.post(
        f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}",
        headers={"code": api_key},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def fetch(http: Any, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET a link the service handed out: through the app (local store) or from S3."""
    parsed = httpx.URL(url)
    if parsed.host == "testserver":
        response: httpx.Response = http.get(parsed.raw_path.decode(), headers=headers)
        return response
    return httpx.get(url, headers=headers, timeout=30)


def tamper(url: str) -> str:
    """The same link with a wrong signature (local ``sig`` or S3 ``X-Amz-Signature``)."""
    parsed = httpx.URL(url)
    name = "X-Amz-Signature" if "X-Amz-Signature" in parsed.params else "sig"
    value = parsed.params[name]
    return str(parsed.copy_set_param(name, ("0" if value[0] != "0" else "1") + value[1:]))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint_token(runtime: Runtime, client_id: str, ttl_seconds: int) -> dict[str, str]:
    """A token of an existing client with a chosen lifetime, as the token endpoint would issue."""
    with transaction(runtime.sessions) as session:
        client = auth_repository.get_client(session, client_id)
        assert client is not None
        token, _ = security.issue_token(
            runtime.settings.signing_key(),
            tenant_id=client.tenant_id,
            client_id=client.client_id,
            scopes=client.scope_set,
            ttl_seconds=ttl_seconds,
        )
    return bearer(token)


def wait_for_job(
    http: httpx.Client | Any, headers: dict[str, str], test_id: int, job_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/v1/test/{test_id}/events", params={"jobId": job_id}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("finished", "failed", "cancelled", "expired"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout}s: {body}")
        time.sleep(0.05)


def seed_test(
    http: httpx.Client | Any,
    headers: dict[str, str],
    test_id: int = 42,
    candidates: int = 3,
    events_per_candidate: int = 4,
) -> dict[int, list[dict[str, Any]]]:
    """Create a test with candidates and events; returns the events sent per userId."""
    assert http.put(
        f"/v1/test/{test_id}", json={"title": f"Test {test_id}"}, headers=headers
    ).status_code in (200, 201)
    people = [{"userId": 100 + n, "candidateId": f"cand-{n}"} for n in range(candidates)]
    assert http.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
    sent: dict[int, list[dict[str, Any]]] = {}
    for person in people:
        user_id = int(person["userId"])  # type: ignore[call-overload]
        batch = [
            {
                "eventId": f"e-{user_id}-{n}",
                "event": "network_lost" if n % 2 else "new_seb_login",
                "timeStamp": f"2026-06-01T09:{n:02d}:00.123Z",
                "extraInfo": {"type": "ip", "value": "10.0.0.1"} if n % 3 == 0 else None,
                "flaggingInfo": None,
                "userId": None,
            }
            for n in range(events_per_candidate)
        ]
        if batch:
            response = http.post(
                f"/v1/test/{test_id}/candidates/{user_id}/events", json=batch, headers=headers
            )
            assert response.status_code == 201, response.text
        sent[user_id] = batch
    return sent
