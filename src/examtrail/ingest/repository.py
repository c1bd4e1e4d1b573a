"""SQL for tests, candidates, events and attachments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from examtrail.core.db import utcnow
from examtrail.ingest.models import Attachment, Candidate, Event, Test


def _insert(session: Session, model: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def get_test(session: Session, tenant_id: int, external_id: int, *, lock: bool = False) -> Test | None:
    stmt = select(Test).where(Test.tenant_id == tenant_id, Test.external_id == external_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def upsert_test(session: Session, tenant_id: int, external_id: int, title: str) -> tuple[Test, bool]:
    stmt = (
        _insert(session, Test)
        .values(
            tenant_id=tenant_id,
            external_id=external_id,
            title=title,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "external_id"])
        .returning(Test.id)
    )
    created = session.execute(stmt).scalar_one_or_none() is not None
    test = get_test(session, tenant_id, external_id)
    assert test is not None
    if not created and test.title != title:
        test.title = title
        session.flush()
    return test, created


def test_counts(session: Session, test_pk: int) -> tuple[int, int]:
    candidates = session.scalar(
        select(func.count()).select_from(Candidate).where(Candidate.test_pk == test_pk)
    )
    events = session.scalar(select(func.count()).select_from(Event).where(Event.test_pk == test_pk))
    return candidates or 0, events or 0


def existing_candidates(
    session: Session, test_pk: int, user_ids: Sequence[int]
) -> dict[int, tuple[int, str]]:
    """user_id -> (candidate pk, candidateId) for those that exist."""
    found: dict[int, tuple[int, str]] = {}
    for start in range(0, len(user_ids), 1000):
        chunk = user_ids[start : start + 1000]
        rows = session.execute(
            select(Candidate.user_id, Candidate.id, Candidate.candidate_id).where(
                Candidate.test_pk == test_pk, Candidate.user_id.in_(chunk)
            )
        )
        for user_id, pk, candidate_id in rows:
            found[user_id] = (pk, candidate_id)
    return found


def insert_candidates(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(_insert(session, Candidate), rows)


def rename_candidates(session: Session, test_pk: int, renames: dict[int, str]) -> None:
    for user_id, candidate_id in renames.items():
        session.execute(
            update(Candidate)
            .where(Candidate.test_pk == test_pk, Candidate.user_id == user_id)
            .values(candidate_id=candidate_id)
        )


def get_candidate_pk(session: Session, test_pk: int, user_id: int) -> int | None:
    return session.scalar(
        select(Candidate.id).where(Candidate.test_pk == test_pk, Candidate.user_id == user_id)
    )


def insert_events(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert what is new; returns the event ids actually inserted (others already existed)."""
    if not rows:
        return set()
    stmt = (
        _insert(session, Event)
        .on_conflict_do_nothing(index_elements=["test_pk", "event_id"])
        .returning(Event.event_id)
    )
    return set(session.scalars(stmt, rows).all())


def existing_events(session: Session, test_pk: int, event_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """event_id -> (candidate pk, doc) for ids already stored in this test."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(event_ids), 1000):
        chunk = event_ids[start : start + 1000]
        rows = session.execute(
            select(Event.event_id, Event.candidate_pk, Event.doc).where(
                Event.test_pk == test_pk, Event.event_id.in_(chunk)
            )
        )
        for event_id, candidate_pk, doc in rows:
            found[event_id] = (candidate_pk, doc)
    return found


def get_event(session: Session, test_pk: int, candidate_pk: int, event_id: str) -> Event | None:
    return session.scalars(
        select(Event).where(
            Event.test_pk == test_pk, Event.candidate_pk == candidate_pk, Event.event_id == event_id
        )
    ).one_or_none()


def get_attachment(session: Session, event_pk: int, file_name: str) -> Attachment | None:
    return session.scalars(
        select(Attachment).where(Attachment.event_pk == event_pk, Attachment.file_name == file_name)
    ).one_or_none()


def add_attachment(session: Session, attachment: Attachment) -> None:
    session.add(attachment)
    session.execute(
        update(Event).where(Event.id == attachment.event_pk).values(file_count=Event.file_count + 1)
    )
    session.flush()
