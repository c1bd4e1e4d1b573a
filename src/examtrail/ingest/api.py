"""Ingestion routes (scope ``ingest``): tests, candidates, events and evidence files."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache, partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import Field, TypeAdapter

from examtrail.auth.deps import IngestPrincipal, ReaderPrincipal, authenticate, check_scope
from examtrail.core.batching import GroupCommitWriter, WriterStopped
from examtrail.core.body import JsonBodyRoute, body_limit, declares_more_than, validate_json
from examtrail.core.db import commit_retrying_deadlock
from examtrail.core.errors import PayloadTooLarge, ServiceUnavailable, Unprocessable
from examtrail.core.fastpath import add_fast_route, int64_param
from examtrail.core.media import require_json
from examtrail.core.responses import model_response
from examtrail.core.schemas import ASCII_DIGITS, NO_CONTROL_OR_EMPTY, Int64Id
from examtrail.core.security import Principal
from examtrail.deps import RuntimeDep, SessionDep, WriteSessionDep, in_write_session
from examtrail.ingest import service
from examtrail.ingest.schemas import (
    AttachmentOut,
    CandidateIn,
    CandidatesResult,
    EventBatch,
    EventIn,
    EventsResult,
    FileName,
    TestIn,
    TestOut,
    TestsPage,
    parse_batch,
    parse_event,
)
from examtrail.runtime import Runtime
from examtrail.storage.base import ObjectTooLarge

# JSON bodies read as the events call reads its own (core.body.parse_json).
router = APIRouter(prefix="/v1/test", tags=["ingest"], route_class=JsonBodyRoute)
list_router = APIRouter(tags=["ingest"])

TestId = Annotated[Int64Id, Path(alias="testId", description="The test's int64 id")]
UserId = Annotated[Int64Id, Path(alias="userId", description="The candidate's int64 user id")]
EventIdPath = Annotated[
    str,
    Path(
        alias="eventId",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The event's id (as given or assigned when it was recorded)",
    ),
]
FileNamePath = Annotated[FileName, Path(alias="fileName", description="The file's name (not a path)")]
JsonBody = [Depends(require_json)]


@list_router.get(
    "/v1/tests",
    response_model=TestsPage,
    summary="List the tenant's tests (keyset pagination)",
    description="Tests in `testId` order with their candidates, events, flags and latest event. "
    "Pass the answer's `nextAfter` as `after` for the next page (null on the last page). "
    "`q` keeps the tests whose title contains it (case-insensitive) or whose testId it is. "
    "Scope `ingest` or `export`.",
)
def list_tests(
    principal: ReaderPrincipal,
    session: SessionDep,
    response: Response,
    after: Annotated[Int64Id | None, Query(description="Last testId of the previous page")] = None,
    limit: Annotated[int, Field(ge=1, le=500), ASCII_DIGITS, Query(description="Page size")] = 50,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY, description="Search by title or testId"),
    ] = None,
) -> TestsPage:
    response.headers["Cache-Control"] = "no-store"
    return service.list_tests(
        session, principal.tenant_id, after=after, limit=limit, query=(q or "").strip() or None
    )


@router.put(
    "/{testId}",
    response_model=TestOut,
    summary="Create or update a test",
    description="201 when the test is new, 200 when it existed (its title is updated).",
    responses={201: {"model": TestOut, "description": "The test was created"}},
    dependencies=JsonBody,
)
def put_test(
    test_id: TestId, body: TestIn, principal: IngestPrincipal, session: WriteSessionDep, response: Response
) -> TestOut:
    actor = principal.client_id
    out, created = service.put_test(session, principal.tenant_id, test_id, body.title, actor=actor)
    session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out


@router.get("/{testId}", response_model=TestOut, summary="Describe a test")
def get_test(test_id: TestId, principal: IngestPrincipal, session: SessionDep) -> TestOut:
    return service.describe_test(session, service.require_test(session, principal.tenant_id, test_id))


@router.put(
    "/{testId}/candidates",
    response_model=CandidatesResult,
    summary="Add or update candidates",
    description=(
        "Registers the test's candidates by `userId` (up to 100,000 per call): a new `userId` is "
        "created, a known one takes the `candidateId` sent. The list must not contradict itself: "
        "a `userId` repeated with another `candidateId` is a 422 whose `details` give the index "
        "of each repeat, and nothing is stored (the same pair twice is fine)."
    ),
    dependencies=JsonBody,
)
def put_candidates(
    test_id: TestId,
    body: Annotated[list[CandidateIn], Field(max_length=100_000)],
    principal: IngestPrincipal,
    session: WriteSessionDep,
) -> CandidatesResult:
    # The test row's lock (PostgreSQL; SQLite has one writer): concurrent PUTs of the same new
    # userIds queue instead of both finding them missing (the loser's INSERT broke the unique
    # key), and a PUT racing the test's erasure finds the test gone, not its hidden rows.
    test = service.require_test(session, principal.tenant_id, test_id, lock=True)
    result = service.put_candidates(session, test, body, actor=principal.client_id)
    session.commit()
    return result


@lru_cache(maxsize=4)
def _events_adapter(max_batch: int) -> TypeAdapter[list[EventIn]]:
    return TypeAdapter(Annotated[list[EventIn], Field(min_length=1, max_length=max_batch)])


_event_adapter = TypeAdapter(EventIn)


async def _events_body(request: Request, runtime: RuntimeDep) -> list[EventIn] | EventBatch:
    settings = runtime.settings
    raw = await request.body()  # within EXAMTRAIL_MAX_REQUEST_BYTES (core.body.BodyLimit)
    if raw.lstrip()[:1] != b"[":
        # One event: validated as a batch's are (no model objects), else by EventIn (its errors).
        one = parse_event(raw)
        return one if one is not None else [_parse_one_event(raw)]
    batch = parse_batch(raw, settings.max_batch_events)
    if batch is not None:
        return batch
    # Not on the fast path: EventIn decides (the batch may still be valid), with its errors.
    try:
        return validate_json(_events_adapter(settings.max_batch_events), raw)
    except Unprocessable as exc:
        if any(d.get("type") == "too_long" and "index" not in d and "field" not in d for d in exc.details):
            raise PayloadTooLarge(
                f"A batch holds at most {settings.max_batch_events} events.", code="batch_too_large"
            ) from None
        raise


def _parse_one_event(raw: bytes) -> EventIn:
    return validate_json(_event_adapter, raw)


_EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event, or an array of up to 10,000 (all or nothing).",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EventIn"},
                            "minItems": 1,
                            "maxItems": 10_000,
                        },
                    ]
                }
            }
        },
    }
}


# Requests of at most this many events go through the process's group-commit writer
# (live exam clients send one at a time); larger batches keep a transaction of their own on
# a worker thread, so that they run side by side and never hold up a group of single events.
GROUP_COMMIT_MAX_EVENTS = 100


async def _plain_events(request: Request) -> Response | None:
    """The fast path of ``post_events`` (``core.fastpath``): valid path ids, then what the route's
    dependencies do, in their order (content type 415, body 400/413/422, token 401, scope 403)."""
    test_id = int64_param(request, "testId")
    user_id = int64_param(request, "userId")
    if test_id is None or user_id is None:
        return None
    await require_json(request)
    runtime: Runtime = request.app.state.runtime
    events = await _events_body(request, runtime)
    principal = check_scope(await authenticate(runtime, request.headers.get("authorization", "")), "ingest")
    result = await _record(request, principal, test_id, user_id, events)
    return model_response(result, status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


@add_fast_route(
    router,
    "POST",
    "/{testId}/candidates/{userId}/events",
    _plain_events,
    response_model=EventsResult,
    status_code=status.HTTP_201_CREATED,
    summary="Record events on a candidate",
    description="Idempotent on eventId: the same event again stores nothing new (200); "
    "the same eventId with other content is a 409. A batch is all or nothing.",
    responses={200: {"model": EventsResult, "description": "Nothing new: every event was already stored"}},
    openapi_extra=_EVENTS_BODY,
    dependencies=JsonBody,
)
async def post_events(
    request: Request,
    test_id: TestId,
    user_id: UserId,
    events: Annotated[list[EventIn] | EventBatch, Depends(_events_body)],
    principal: IngestPrincipal,
    response: Response,
) -> EventsResult:
    result = await _record(request, principal, test_id, user_id, events)
    if result.created == 0:
        response.status_code = status.HTTP_200_OK
    return result


async def _record(
    request: Request,
    principal: Principal,
    test_id: int,
    user_id: int,
    events: Sequence[EventIn] | EventBatch,
) -> EventsResult:
    # From the app's state, not dependencies: each one costs the framework a resolution step.
    runtime: Runtime = request.app.state.runtime
    writer: GroupCommitWriter = request.app.state.ingest_writer
    store = service.EventsRequest(principal.tenant_id, test_id, user_id, events, principal.client_id)
    if len(events) <= GROUP_COMMIT_MAX_EVENTS:
        # Answered only once the group's commit has stored it (or with its own error). One
        # event (live exam clients): stored together with the group's other single events.
        together = service.record_single_events if len(events) == 1 else None
        try:
            return await writer.run(store, together=together)
        except WriterStopped:
            raise ServiceUnavailable(
                "The server is shutting down; send the events again.",
                code="shutting_down",
                headers={"Retry-After": "1"},
            ) from None
    # Its events in id order, it never deadlocks with another batch; it can with a group of the
    # writer (several requests in one transaction): then it runs once more.
    return await in_write_session(runtime, partial(commit_retrying_deadlock, work=store))


@router.put(
    "/{testId}/candidates/{userId}/events/{eventId}/files/{fileName:path}",
    response_model=AttachmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Attach an evidence file to an event (the body is the file)",
    description="Send the file's raw bytes as the body with its own `Content-Type` (`curl --data-binary "
    "@FILE` or `curl -T FILE`); without one it is stored as `application/octet-stream`. "
    "`multipart/form-data` (`curl -F`) is refused with 415; an empty body is a 422 `empty_file`.\n\n"
    "Evidence files are immutable: 201 when the file is new; the same `fileName` again with "
    "identical bytes is idempotent (200, the same `contentItemId`, the first `Content-Type` kept); "
    "with different bytes it is a 409 `file_exists` and nothing changes. A stored file is never "
    "replaced or deleted (only erasure removes it), so links in earlier exports keep serving it.",
    responses={
        200: {"model": AttachmentOut, "description": "The same bytes were already attached under this name"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}
            },
        }
    },
)
@body_limit(None)  # streamed to the object store within EXAMTRAIL_MAX_FILE_BYTES, checked here
async def put_file(
    request: Request,
    test_id: TestId,
    user_id: UserId,
    event_id: EventIdPath,
    file_name: FileNamePath,
    principal: IngestPrincipal,
    runtime: RuntimeDep,
    response: Response,
) -> AttachmentOut:
    limit = runtime.settings.max_file_bytes
    if declares_more_than(request.headers, limit):
        raise _file_too_large(limit)
    content_type = service.checked_content_type(request.headers.get("content-type"))
    uploads = service.FileUploads(runtime.sessions, runtime.store, limit, principal.client_id)
    try:
        out, created = await uploads.upload(
            principal.tenant_id, test_id, user_id, event_id, file_name, content_type, request.stream()
        )
    except ObjectTooLarge:
        raise _file_too_large(limit) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out


def _file_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Files are limited to {limit} bytes.", code="file_too_large")
