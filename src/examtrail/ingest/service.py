"""Ingestion of tests, candidates, events and evidence files."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterable, Sequence
from contextvars import Context
from dataclasses import dataclass
from typing import Any

from anyio import CancelScope, to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from examtrail.audit import actions
from examtrail.audit.service import Entry, record, record_each, record_many
from examtrail.core.batching import Outcome
from examtrail.core.db import transaction
from examtrail.core.errors import Conflict, NotFound, Unprocessable
from examtrail.core.media import UnsupportedMediaType, media_type
from examtrail.core.schemas import is_ascii_digits
from examtrail.core.timeutil import format_dt, format_ms
from examtrail.ingest import docs, repository
from examtrail.ingest.models import Attachment, Test
from examtrail.ingest.schemas import (
    AttachmentOut,
    CandidateIn,
    CandidatesResult,
    EventBatch,
    EventDict,
    EventIn,
    EventsResult,
    TestOut,
    TestsPage,
    TestSummary,
)
from examtrail.storage.base import HashingCounter, ObjectStore, ObjectWriter, StoredObject

log = logging.getLogger(__name__)


def require_test(session: Session, tenant_id: int, test_id: int, *, lock: bool = False) -> Test:
    test = repository.get_test(session, tenant_id, test_id, lock=lock)
    if test is None:
        raise _test_not_found(test_id)
    return test


def require_test_cached(session: Session, tenant_id: int, test_id: int) -> Test:
    """:func:`require_test`, looked up once per session (a group commit's requests share one)."""
    cache: dict[tuple[int, int], Test] = session.info.setdefault("examtrail_tests", {})
    test = cache.get((tenant_id, test_id))
    if test is None:
        test = cache[(tenant_id, test_id)] = require_test(session, tenant_id, test_id)
    return test


def record_events(
    session: Session,
    tenant_id: int,
    test_id: int,
    user_id: int,
    events: Sequence[EventIn] | EventBatch,
    *,
    actor: str | None,
) -> EventsResult:
    """One ``POST …/events`` request's unit of work: the test, then :func:`add_events`.

    The caller owns the transaction (a group commit runs it in a SAVEPOINT of its own).
    """
    test = require_test_cached(session, tenant_id, test_id)
    return add_events(session, test, user_id, events, actor=actor)


@dataclass(frozen=True, slots=True)
class EventsRequest:
    """A ``POST …/events`` request as a group-commit unit: on its own (called with a session)
    it is :func:`record_events`; :func:`record_single_events` stores a group's requests of
    one event together."""

    tenant_id: int
    test_id: int
    user_id: int
    events: Sequence[EventIn] | EventBatch
    actor: str | None

    def __call__(self, session: Session) -> EventsResult:
        return record_events(
            session, self.tenant_id, self.test_id, self.user_id, self.events, actor=self.actor
        )


def record_single_events(session: Session, units: Sequence[tuple[Any, Context]]) -> list[Outcome | None]:
    """The group-commit runner of :class:`EventsRequest` units of one event on PostgreSQL:
    the tests and candidates in one query, the events in one ``INSERT … ON CONFLICT DO
    NOTHING RETURNING``, the re-sent ones compared in one query, the audit entries in one
    insert (each with its request's id and address): three round trips for the whole group
    (four with re-sent events) instead of three per request. Each unit gets its own answer
    (201, 200, 404, 409); one refused writes nothing. The same event twice in the group, or a
    request of several: run on their own after (None). SQLite (one writer, in-process
    statements) runs each alone."""
    if session.get_bind().dialect.name != "postgresql":
        return [None] * len(units)
    outcomes: list[Outcome | None] = [None] * len(units)
    single = [index for index, (unit, _) in enumerate(units) if len(unit.events) == 1]
    tests, candidates = repository.tests_and_candidates(
        session, [(units[i][0].tenant_id, units[i][0].test_id, units[i][0].user_id) for i in single]
    )
    rows: dict[tuple[int, str], tuple[int, repository.KeyedEventRow]] = {}
    for index in single:
        unit: EventsRequest = units[index][0]
        test_pk = tests.get((unit.tenant_id, unit.test_id))
        if test_pk is None:
            outcomes[index] = (None, _test_not_found(unit.test_id))
            continue
        candidate_pk = candidates.get((test_pk, unit.user_id))
        if candidate_pk is None:
            outcomes[index] = (None, candidate_not_found(unit.test_id, unit.user_id))
            continue
        batch = unit.events if isinstance(unit.events, EventBatch) else EventBatch.of(unit.events)
        event = batch.events[0]
        event_id = event.get("eventId") or str(uuid.uuid4())
        if (test_pk, event_id) not in rows:
            columns = event_row(event_id, event, batch.occurred_ms[0])
            rows[(test_pk, event_id)] = (index, (test_pk, candidate_pk, *columns))
    inserted = repository.insert_keyed_events(session, [row for _, row in rows.values()])
    stored = repository.stored_events(session, [key for key in rows if key not in inserted])
    entries: list[tuple[Entry, Context]] = []
    for key, (index, row) in rows.items():
        created = int(key in inserted)
        if not created:
            if key not in stored:
                continue  # removed since (an erasure): it runs on its own
            if stored[key] != (row[1], row[7]):
                outcomes[index] = (None, _events_exist([_exists_detail(0, key[1])]))
                continue
        unit, context = units[index]
        result = EventsResult(received=1, created=created, duplicates=1 - created, eventIds=[key[1]])
        outcomes[index] = (result, None)
        entries.append((_ingested_entry(unit.tenant_id, unit.test_id, unit.actor, result), context))
    record_each(session, entries)
    return outcomes


def _test_not_found(test_id: int) -> NotFound:
    # Same answer for "another tenant's" and "does not exist": no probing across tenants.
    return NotFound(f"Test {test_id} not found.", code="test_not_found")


def candidate_not_found(test_id: int, user_id: int) -> NotFound:
    return NotFound(f"Candidate {user_id} not found on test {test_id}.", code="candidate_not_found")


def _events_exist(details: list[dict[str, Any]]) -> Conflict:
    return Conflict(
        "Some events already exist with different content.", code="event_conflict", details=details
    )


def _exists_detail(index: int, event_id: str) -> dict[str, Any]:
    message = f"eventId {event_id} already exists with different content"
    return {"index": index, "field": "eventId", "message": message}


def _ingested_entry(tenant_id: int, test_id: int, actor: str | None, result: EventsResult) -> Entry:
    # One entry per request (batch), never per event: the test and counts, no candidate or event content.
    return Entry(
        tenant_id=tenant_id,
        client_id=actor,
        action=actions.EVENTS_INGESTED,
        object_type=actions.OBJECT_TEST,
        object_id=test_id,
        test_id=test_id,
        details={"received": result.received, "created": result.created, "duplicates": result.duplicates},
    )


def put_test(
    session: Session, tenant_id: int, test_id: int, title: str, *, actor: str | None
) -> tuple[TestOut, bool]:
    """Creates or renames the test; audited (``test.created``, or ``test.updated`` saying
    whether the title changed: never the title itself)."""
    before = repository.get_test(session, tenant_id, test_id)
    old_title = before.title if before is not None else None
    test, created = repository.upsert_test(session, tenant_id, test_id, title)
    action = actions.TEST_CREATED if created else actions.TEST_UPDATED
    details = None if created else {"renamed": old_title != title}
    record_many(session, [Entry(tenant_id, actor, action, actions.OBJECT_TEST, test_id, test_id, details)])
    return describe_test(session, test), created


def describe_test(session: Session, test: Test) -> TestOut:
    candidates, events = repository.test_counts(session, test.id)
    return TestOut(
        testId=test.external_id,
        title=test.title,
        candidates=candidates,
        events=events,
        created=format_dt(test.created_at) or "",
        updated=format_dt(test.updated_at) or "",
    )


def list_tests(
    session: Session, tenant_id: int, *, after: int | None = None, limit: int = 50, query: str | None = None
) -> TestsPage:
    """One page of the tenant's tests with their counts, in ``testId`` order."""
    rows = repository.list_tests(session, tenant_id, after=after, limit=limit + 1, query=query)
    more = len(rows) > limit
    rows = rows[:limit]
    counts = repository.tests_counts(session, [test.id for test in rows])
    tests = []
    for test in rows:
        candidates, events, flags, last = counts[test.id]
        tests.append(
            TestSummary(
                testId=test.external_id,
                title=test.title,
                candidates=candidates,
                events=events,
                flags=flags,
                lastEvent=format_ms(last) if last is not None else None,
                created=format_dt(test.created_at) or "",
                updated=format_dt(test.updated_at) or "",
            )
        )
    return TestsPage(tests=tests, nextAfter=rows[-1].external_id if more and rows else None)


def put_candidates(
    session: Session, test: Test, candidates: Sequence[CandidateIn], *, actor: str | None
) -> CandidatesResult:
    """Registers and renames candidates; one ``candidates.updated`` entry with the counts
    (never a ``candidateId``)."""
    wanted: dict[int, str] = {}
    problems = []
    for index, candidate in enumerate(candidates):
        previous = wanted.setdefault(candidate.userId, candidate.candidateId)
        if previous != candidate.candidateId:
            problems.append(
                {
                    "index": index,
                    "field": "candidateId",
                    "message": "userId repeated with another candidateId",
                }
            )
    if problems:
        raise Unprocessable("The candidate list contradicts itself.", details=problems)
    existing = repository.existing_candidates(session, test.id, list(wanted))
    new_rows = [
        {"test_pk": test.id, "user_id": user_id, "candidate_id": candidate_id}
        for user_id, candidate_id in wanted.items()
        if user_id not in existing
    ]
    renames = {
        user_id: candidate_id
        for user_id, candidate_id in wanted.items()
        if user_id in existing and existing[user_id][1] != candidate_id
    }
    repository.insert_candidates(session, new_rows)
    repository.rename_candidates(session, test.id, renames)
    result = CandidatesResult(received=len(candidates), created=len(new_rows), updated=len(renames))
    test_id, details = test.external_id, result.model_dump()
    entry = Entry(
        test.tenant_id, actor, actions.CANDIDATES_UPDATED, actions.OBJECT_TEST, test_id, test_id, details
    )
    record_many(session, [entry])
    return result


def event_doc(event_id: str, event: EventIn, occurred_at_ms: int) -> str:
    """The stored doc of an ingested event."""
    flagging = event.flaggingInfo
    return docs.build_doc(
        event_id,
        event.event,
        occurred_at_ms,
        event.extraInfo.model_dump() if event.extraInfo else None,
        flagging.model_dump() if flagging else None,
        event.userId,
    )


def event_row(event_id: str, event: EventDict, occurred_at_ms: int) -> repository.EventRow:
    """The stored row of a validated event: its columns and doc (as ``event_doc`` builds it)."""
    # The doc's nested objects in the models' key order, defaults included (as model_dump).
    extra = event.get("extraInfo")
    extra_info = None if extra is None else {"type": extra["type"], "value": extra["value"]}
    flagging = event.get("flaggingInfo")
    flag_type = None
    flagging_info: dict[str, Any] | None = None
    if flagging is not None:
        flag_type = flagging["flagType"]
        flagging_info = {
            "flagType": flag_type,
            "flagSubTypes": flagging.get("flagSubTypes", []),
            "comment": flagging.get("comment"),
            "severityLevel": flagging.get("severityLevel"),
        }
    creator = event.get("userId")
    doc = docs.build_doc(event_id, event["event"], occurred_at_ms, extra_info, flagging_info, creator)
    return (event_id, event["event"], occurred_at_ms, creator, flag_type, doc)


def add_events(
    session: Session,
    test: Test,
    user_id: int,
    events: Sequence[EventIn] | EventBatch,
    *,
    actor: str | None = actions.CLI_ACTOR,
) -> EventsResult:
    """Store a batch (all or nothing) and its one audit entry (counts only; ``actor``: the client).

    Nothing is committed here: the caller commits, or rolls back (a 4xx stores nothing); it
    works inside a savepoint of a larger transaction as well."""
    candidate_pk = repository.get_candidate_pk(session, test.id, user_id)
    if candidate_pk is None:
        raise candidate_not_found(test.external_id, user_id)
    batch = events if isinstance(events, EventBatch) else EventBatch.of(events)

    # event_id -> (index in the batch, the row to insert); row[5] is the doc.
    rows: dict[str, tuple[int, repository.EventRow]] = {}
    ordered_ids: list[str] = []
    conflicts: list[dict[str, Any]] = []
    for index, (event, occurred) in enumerate(zip(batch.events, batch.occurred_ms, strict=True)):
        event_id = event.get("eventId") or str(uuid.uuid4())
        row = event_row(event_id, event, occurred)
        doc = row[5]
        ordered_ids.append(event_id)
        seen = rows.get(event_id)
        if seen is not None:
            if seen[1][5] != doc:
                conflicts.append(
                    {
                        "index": index,
                        "field": "eventId",
                        "message": f"eventId {event_id} repeated with other content",
                    }
                )
            continue
        rows[event_id] = (index, row)
    if conflicts:
        raise Conflict(
            "Some events reuse an eventId with different content.", code="event_conflict", details=conflicts
        )

    inserted = repository.insert_events(session, test.id, candidate_pk, [row for _, row in rows.values()])
    others = [event_id for event_id in rows if event_id not in inserted]
    if others:
        stored = repository.existing_events(session, test.id, others)
        for event_id in others:
            stored_candidate, stored_doc = stored[event_id]
            if stored_candidate != candidate_pk or stored_doc != rows[event_id][1][5]:
                conflicts.append(_exists_detail(rows[event_id][0], event_id))
        if conflicts:
            # Nothing of the batch is kept: the caller rolls the transaction back.
            raise _events_exist(conflicts)
    result = EventsResult(
        received=len(events),
        created=len(inserted),
        duplicates=len(events) - len(inserted),
        eventIds=ordered_ids,
    )
    record_many(session, [_ingested_entry(test.tenant_id, test.external_id, actor, result)])
    return result


# Attachment keys: ``attachments/<tenant id>/<test pk>/<event pk>/<random>``.
ATTACHMENTS_PREFIX = "attachments"


def attachment_of_key(session: Session, key: str) -> tuple[int, int, int] | None:
    """``(tenant id, contentItemId, testId)`` of the attachment stored at ``key``, if any."""
    parts = key.split("/")
    numbers = (parts[1], parts[3]) if len(parts) == 5 else ()
    if not numbers or parts[0] != ATTACHMENTS_PREFIX or not all(is_ascii_digits(n) for n in numbers):
        return None
    tenant_id, event_pk = int(parts[1]), int(parts[3])
    found = repository.attachment_at_key(session, tenant_id, event_pk, key)
    return None if found is None else (tenant_id, *found)


@dataclass(frozen=True, slots=True)
class UploadTarget:
    tenant_id: int
    test_id: int
    test_pk: int
    event_pk: int
    storage_key: str
    # A file is already attached under this name: the upload is a repeat (only hashed).
    attached: bool = False


def prepare_upload(
    session: Session, tenant_id: int, test_id: int, user_id: int, event_id: str, file_name: str
) -> UploadTarget:
    test = require_test(session, tenant_id, test_id)
    candidate_pk = repository.get_candidate_pk(session, test.id, user_id)
    if candidate_pk is None:
        raise candidate_not_found(test_id, user_id)
    event = repository.get_event(session, test.id, candidate_pk, event_id)
    if event is None:
        raise NotFound(f"Event {event_id} not found for candidate {user_id}.", code="event_not_found")
    # A fresh key per upload, never reused: a stored object is never overwritten.
    key = f"{ATTACHMENTS_PREFIX}/{tenant_id}/{test.id}/{event.id}/{uuid.uuid4().hex}"
    attached = repository.get_attachment(session, event.id, file_name) is not None
    return UploadTarget(tenant_id, test.external_id, test.id, event.id, key, attached)


def empty_file() -> Unprocessable:
    # Evidence is immutable: a body forgotten by mistake would hold the name for good.
    return Unprocessable(
        "The file is empty: send its bytes as the request body (curl --data-binary @FILE).",
        code="empty_file",
        details=[{"field": "body", "message": "an evidence file has at least one byte"}],
    )


# A media type as stored (``attachments.content_type`` is varchar(200)): printable ASCII.
MAX_CONTENT_TYPE_LENGTH = 200
_CONTENT_TYPE_RE = re.compile(r"^[\x20-\x7e]+$")


def checked_content_type(value: str | None) -> str:
    """The upload's ``Content-Type`` to store.

    None, or the form type ``curl --data-binary`` adds by default, is stored as
    ``application/octet-stream``; ``multipart/form-data`` (``curl -F``) is a 415 (the body would
    be the multipart envelope, not the file); too long or not printable ASCII is a 422.
    """
    kind = media_type(value)
    if kind is None or kind == "application/x-www-form-urlencoded":
        return "application/octet-stream"
    if kind.startswith("multipart/"):
        raise UnsupportedMediaType(
            "Send the file's raw bytes as the request body (curl --data-binary @FILE or -T FILE, "
            "with its own Content-Type), not multipart/form-data (curl -F).",
            details=[{"field": "Content-Type", "message": "multipart bodies are not accepted"}],
        )
    assert value is not None
    value = value.strip()
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE_RE.match(value):
        raise Unprocessable(
            f"The Content-Type must be printable ASCII of at most {MAX_CONTENT_TYPE_LENGTH} characters.",
            code="invalid_content_type",
            details=[{"field": "Content-Type", "message": "too long or not printable ASCII"}],
        )
    return value


def record_upload(
    session: Session,
    target: UploadTarget,
    file_name: str,
    content_type: str,
    size: int,
    sha256: str,
    *,
    actor: str | None = actions.CLI_ACTOR,
    repeat: bool = False,
) -> tuple[Attachment, bool]:
    """Store the attachment row (and its audit entry); returns it and whether it is new.

    Evidence is immutable: the same name again with the same bytes (size and SHA-256) is
    the stored attachment, unchanged (its first Content-Type included); with other bytes it
    is a 409 ``file_exists`` and nothing changes. A ``repeat`` (no object was stored for it)
    whose attachment has gone meanwhile is a 404: attachments only go with their event.
    """
    current = repository.get_attachment(session, target.event_pk, file_name)
    if current is None and repeat:
        raise NotFound("The event no longer exists.", code="event_not_found")
    if current is not None and (current.sha256 != sha256 or current.size != size):
        raise Conflict(
            f"The event already has a file named {file_name!r} with other content; "
            "evidence files cannot be replaced.",
            code="file_exists",
            details=[
                {
                    "field": "fileName",
                    "message": "a file of this name with other bytes is already attached",
                    "contentItemId": current.id,
                    "sha256": current.sha256,
                }
            ],
        )
    attachment = current
    if attachment is None:
        attachment = Attachment(
            event_pk=target.event_pk,
            file_name=file_name,
            content_type=content_type,
            size=size,
            sha256=sha256,
            storage_key=target.storage_key,
        )
        repository.add_attachment(session, attachment)
    # The contentItemId and size; not the file name (names may say who is on the evidence).
    record(
        session,
        tenant_id=target.tenant_id,
        client_id=actor,
        action=actions.FILE_UPLOADED,
        object_type=actions.OBJECT_ATTACHMENT,
        object_id=attachment.id,
        test_id=target.test_id,
        details={"fileSize": size, "sha256": sha256, "created": current is None},
    )
    return attachment, current is None


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        fileName=attachment.file_name,
        contentItemId=attachment.id,
        fileSize=attachment.size,
        sha256=attachment.sha256,
        contentType=attachment.content_type,
    )


@dataclass(frozen=True, slots=True)
class FileUploads:
    """Evidence-file uploads: the body streams into the object store, then the row is recorded.

    No transaction is held while the body streams (it may be large and slow): the target
    is resolved in a short read, the bytes go to a new, never reused key, and only then is
    the row written in a write transaction. Stored files are immutable: an upload under a
    name already attached (a client's retry: same bytes, 200; other bytes, 409) is only
    hashed, never stored; one that turns out to repeat an attachment recorded while it
    streamed deletes only its own new object, never the attachment's. An empty body is a 422
    ``empty_file``, nothing stored. Nothing is left behind on
    failure: the writer is aborted on any error while streaming (``ObjectTooLarge`` past
    ``max_bytes`` included, which propagates for the caller to answer) and the new object
    is deleted unless a new row references it.
    Blocking work (database, store) runs on worker threads; the event loop only awaits.
    """

    sessions: sessionmaker[Session]
    store: ObjectStore
    max_bytes: int
    actor: str | None = actions.CLI_ACTOR  # the API client uploading, for the audit log

    async def upload(
        self,
        tenant_id: int,
        test_id: int,
        user_id: int,
        event_id: str,
        file_name: str,
        content_type: str,
        body: AsyncIterable[bytes],
    ) -> tuple[AttachmentOut, bool]:
        """The attachment and whether this upload created it."""
        target = await to_thread.run_sync(self._prepare, tenant_id, test_id, user_id, event_id, file_name)
        if target.attached:
            size, sha256 = await self._digest_body(body)
            if size == 0:
                raise empty_file()
            return await to_thread.run_sync(
                self._record_repeat, target, file_name, content_type, size, sha256
            )
        stored = await self._store_body(target.storage_key, content_type, body)
        return await to_thread.run_sync(self._record, target, file_name, content_type, stored)

    def _prepare(
        self, tenant_id: int, test_id: int, user_id: int, event_id: str, file_name: str
    ) -> UploadTarget:
        with self.sessions() as session:
            return prepare_upload(session, tenant_id, test_id, user_id, event_id, file_name)

    def _open_writer(self, key: str, content_type: str) -> ObjectWriter:
        return self.store.open_writer(key, content_type=content_type, max_size=self.max_bytes)

    async def _store_body(self, key: str, content_type: str, body: AsyncIterable[bytes]) -> StoredObject:
        writer = await to_thread.run_sync(self._open_writer, key, content_type)
        try:
            empty = True
            async for chunk in body:
                if chunk:
                    empty = False
                    await to_thread.run_sync(writer.write, chunk)
            if empty:
                raise empty_file()
            return await to_thread.run_sync(writer.commit)
        except BaseException:
            # Shielded: a cancelled request still discards what was written.
            with CancelScope(shield=True):
                await to_thread.run_sync(writer.abort)
            raise

    async def _digest_body(self, body: AsyncIterable[bytes]) -> tuple[int, str]:
        """Size and SHA-256 of the body, within ``max_bytes`` (``ObjectTooLarge`` past it)."""
        digest = HashingCounter(self.max_bytes)
        async for chunk in body:
            digest.update(chunk)  # hashlib frees the GIL on large chunks; no thread hop needed
        return digest.size, digest.hexdigest()

    def _record_repeat(
        self, target: UploadTarget, file_name: str, content_type: str, size: int, sha256: str
    ) -> tuple[AttachmentOut, bool]:
        """The answer to an upload under a name already attached: the stored attachment (200)
        or ``file_exists`` (409), audited as any upload; no object was written."""
        with transaction(self.sessions) as session:
            attachment, created = record_upload(
                session, target, file_name, content_type, size, sha256, actor=self.actor, repeat=True
            )
            return attachment_out(attachment), created

    def _record(
        self, target: UploadTarget, file_name: str, content_type: str, stored: StoredObject
    ) -> tuple[AttachmentOut, bool]:
        created = False
        try:
            try:
                out, created = self._record_once(target, file_name, content_type, stored)
            except IntegrityError:
                # A concurrent first upload of the same name committed between our read and
                # our insert: compare with it, exactly as a later upload would (200 or 409).
                try:
                    out, created = self._record_once(target, file_name, content_type, stored)
                except IntegrityError:
                    # The event itself went meanwhile (its candidate or test was erased).
                    raise NotFound("The event no longer exists.", code="event_not_found") from None
        finally:
            if not created:
                # No row references the new object (a repeat, a conflict or a failure): it
                # is nobody's. A failed cleanup must not hide the answer that matters.
                self._delete_quietly(stored.key)
        return out, created

    def _record_once(
        self, target: UploadTarget, file_name: str, content_type: str, stored: StoredObject
    ) -> tuple[AttachmentOut, bool]:
        with transaction(self.sessions) as session:
            attachment, created = record_upload(
                session, target, file_name, content_type, stored.size, stored.sha256, actor=self.actor
            )
            return attachment_out(attachment), created

    def _delete_quietly(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception:
            log.warning("could not delete object %s; it is left orphaned", key, exc_info=True)
