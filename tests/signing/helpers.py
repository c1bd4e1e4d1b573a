"""A finished export, downloaded through the API, and the tenant behind the test headers."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from examtrail.auth import repository as auth_repository
from examtrail.runtime import Runtime
from tests.support.api import fetch, seed_test, wait_for_job


def finished_export(
    http: TestClient, headers: dict[str, str], test_id: int = 42, options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], bytes]:
    """Seed ``test_id`` (once), order an export (with query ``options``), wait, download it."""
    if http.get(f"/v1/test/{test_id}", headers=headers).status_code == 404:
        seed_test(http, headers, test_id=test_id, candidates=2, events_per_candidate=3)
    ordered = http.post(f"/v1/test/{test_id}/events", headers=headers, params=options or {})
    assert ordered.status_code in (200, 202), ordered.text
    status = wait_for_job(http, headers, test_id, ordered.json()["jobId"], timeout=30)
    assert status["status"] == "finished", status
    download = fetch(http, status["downloadUrl"])
    assert download.status_code == 200
    return status, download.content


def tenant_id(runtime: Runtime, name: str = "uni-a") -> int:
    with runtime.sessions() as session:
        tenant = auth_repository.get_tenant_by_name(session, name)
    assert tenant is not None
    return tenant.id
