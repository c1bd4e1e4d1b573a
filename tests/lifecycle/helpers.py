"""Seeding and inspection helpers for the lifecycle tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from examtrail.auth.models import Tenant
from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.lifecycle.models import ErasureJob
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token, seed_test, wait_for_job


def erase_headers(http: Any, runtime: Runtime, tenant: str = "uni-a") -> dict[str, str]:
    client_id, key = create_client(runtime, tenant, scopes="ingest,export,erase")
    return bearer(get_token(http, client_id, key))


def seed_with_files(http: Any, headers: dict[str, str], test_id: int = 42, candidates: int = 3) -> None:
    """``candidates`` candidates (userId 100, 101, ...) with 4 events each and one file on
    each candidate's first event."""
    seed_test(http, headers, test_id, candidates=candidates, events_per_candidate=4)
    for n in range(candidates):
        user_id = 100 + n
        url = f"/v1/test/{test_id}/candidates/{user_id}/events/e-{user_id}-0/files/shot.png"
        body = f"evidence of {user_id} on {test_id}".encode()
        response = http.put(url, content=body, headers={**headers, "Content-Type": "image/png"})
        assert response.status_code in (200, 201), response.text


def export(http: Any, headers: dict[str, str], test_id: int, **params: Any) -> dict[str, Any]:
    ordered = http.post(f"/v1/test/{test_id}/events", params=params, headers=headers)
    assert ordered.status_code in (200, 202), ordered.text
    status = wait_for_job(http, headers, test_id, ordered.json()["jobId"])
    assert status["status"] == "finished", status
    return status


def keys(runtime: Runtime) -> set[str]:
    """Every object in the store: the bucket's listing, or the local store's directory."""
    return set(runtime.store.list_keys(""))


def attachment_keys(runtime: Runtime, tenant_test: int, user_id: int) -> set[str]:
    with runtime.sessions() as session:
        return set(
            session.scalars(
                select(Attachment.storage_key)
                .join(Event, Event.id == Attachment.event_pk)
                .join(Candidate, Candidate.id == Event.candidate_pk)
                .join(Test, Test.id == Candidate.test_pk)
                .where(Test.external_id == tenant_test, Candidate.user_id == user_id)
            )
        )


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as session:
        return {
            "tests": session.scalar(select(func.count()).select_from(Test)) or 0,
            "candidates": session.scalar(select(func.count()).select_from(Candidate)) or 0,
            "events": session.scalar(select(func.count()).select_from(Event)) or 0,
            "attachments": session.scalar(select(func.count()).select_from(Attachment)) or 0,
        }


def user_rows(runtime: Runtime, tenant: str, user_id: int) -> dict[str, int]:
    """Rows of tenant ``tenant`` that belong to candidate ``user_id``, wherever they are
    (the candidate, its events by candidate and by event id, its attachments)."""
    with runtime.sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
        mine = select(Test.id).where(Test.tenant_id == tenant_id)
        candidates = select(Candidate.id).where(Candidate.test_pk.in_(mine), Candidate.user_id == user_id)
        events = select(Event.id).where(
            Event.test_pk.in_(mine),
            (Event.candidate_pk.in_(candidates)) | Event.event_id.like(f"e-{user_id}-%"),
        )
        return {
            "candidates": session.scalar(select(func.count()).select_from(candidates.subquery())) or 0,
            "events": session.scalar(select(func.count()).select_from(events.subquery())) or 0,
            "attachments": session.scalar(
                select(func.count()).select_from(Attachment).where(Attachment.event_pk.in_(events))
            )
            or 0,
        }


def erasure_row(runtime: Runtime, job_id: str) -> ErasureJob:
    with runtime.sessions() as session:
        job = session.get(ErasureJob, job_id)
        assert job is not None
        session.expunge(job)
        return job
