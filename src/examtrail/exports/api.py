"""The seed's test events export API: ``/v1/test/{testId}/events`` (scope ``export``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import Field
from sqlalchemy.orm import Session

from examtrail.auth.deps import ExportPrincipal, authenticate, check_scope
from examtrail.core.db import PgPool
from examtrail.core.errors import Unprocessable
from examtrail.core.fastpath import Endpoint, add_fast_route, int64_param
from examtrail.core.methods import get_with_effects
from examtrail.core.responses import model_response
from examtrail.core.schemas import ASCII_DIGITS, NO_CONTROL, has_control
from examtrail.core.security import Principal
from examtrail.deps import (
    PgPoolDep,
    RuntimeDep,
    SessionDep,
    WriteSessionDep,
    get_pg_pool,
    in_session,
    in_write_session,
)
from examtrail.exports import service
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.exports.options import ExportOptions, has_options, order_options
from examtrail.exports.schemas import ExportJobList, ExportJobOut, export_file_schema
from examtrail.ingest.api import TestId
from examtrail.runtime import Runtime
from examtrail.storage.base import ObjectStore

router = APIRouter(prefix="/v1/test", tags=["export"])
schema_router = APIRouter(tags=["export"])

_JOB_ID = "The export job's id, as answered when the export was ordered"
_JOB_ID_LIMITS: dict[str, Any] = {"min_length": 1, "max_length": 64, "pattern": NO_CONTROL}
JobId = Annotated[str | None, Query(alias="jobId", description=_JOB_ID, **_JOB_ID_LIMITS)]
JobIdPath = Annotated[str, Path(alias="jobId", description=_JOB_ID, **_JOB_ID_LIMITS)]
OptionsDep = Annotated[ExportOptions, Depends(order_options)]


def _status_route(path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    """``@router.get(path, **kwargs)`` with the status call's fast path: a plain status call (a
    valid testId and jobId, no other query parameter) is answered without FastAPI's dependency
    solving, which costs more than the rest of the call; anything else (no jobId, export
    options, input FastAPI would refuse) goes to the route's regular handler. The fast path
    raises the same errors its dependencies would."""
    return add_fast_route(router, "GET", path, _plain_status, **kwargs)


def _job_id_of(request: Request) -> str | None:
    """The jobId of a plain status call (path or sole query parameter), else None."""
    job_id = request.path_params.get("jobId")
    if job_id is None:
        query = request.query_params
        if len(query.multi_items()) != 1:
            return None  # other parameters, or jobId twice: the regular handler answers
        job_id = query.get("jobId")
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 64 or has_control(job_id):
        return None  # the regular handler refuses it (422), as JobId's limits say
    return job_id


async def _plain_status(request: Request) -> Response | None:
    test_id = int64_param(request, "testId")
    job_id = _job_id_of(request)
    if test_id is None or job_id is None:
        return None
    runtime: Runtime = request.app.state.runtime
    # As ExportPrincipal: the token (revocation included), then the scope.
    principal = check_scope(await authenticate(runtime, request.headers.get("authorization", "")), "export")
    return await _status(test_id, principal, runtime, await get_pg_pool(request), job_id)


def _order(
    test_id: int,
    principal: ExportPrincipal,
    session: Session,
    runtime: Runtime,
    options: ExportOptions,
    status_code: int = status.HTTP_202_ACCEPTED,
) -> Response:
    settings = runtime.settings
    ordered = service.order_export(
        session,
        principal,
        test_id,
        options,
        reuse=settings.export_reuse,
        retention_days=settings.export_retention_days,
    )
    # A finished job handed out again (nothing new since) comes with a fresh link.
    reused = ordered.job.status == JobStatus.FINISHED
    out = (
        service.issued_status(session, principal, ordered.job, runtime.store)
        if reused
        else service.job_status(ordered.job, runtime.store, None)
    )
    session.commit()
    if ordered.created:
        # Only after the commit: a worker that wakes up must find the row.
        runtime.queue.send(service.RUN_TASK, ordered.job.id)
    location = f"/v1/test/{test_id}/events?jobId={ordered.job.id}"
    return model_response(out, status_code, {"Location": location})


@router.post(
    "/{testId}/events",
    response_model=ExportJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Order an export of the test's events (getTestEvents)",
    description="Schedules an asynchronous export and answers 202 with the job and a `Location` header. "
    "The query parameters filter (candidates, event names, flags, severities, time window, `since`) "
    "and choose the format and compression; none = the whole test as the seed's JSON file. If an "
    "export of this test with the same options is already queued or running, that job is returned "
    "(a running one only when the attachment links it writes last as long as the caller's token; a "
    "queued one's links are extended to it); so is a finished one when nothing was ingested since "
    "its snapshot, its attachment links last as long as the caller's token and retention keeps its "
    "file at least that long (with a fresh `downloadUrl`). "
    "`GET` on the same path without `jobId` does the same but answers 200 (Inspera's convention).",
)
def order_events(
    test_id: TestId,
    principal: ExportPrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    options: OptionsDep,
) -> Response:
    return _order(test_id, principal, session, runtime, options)


# The status call is polled: it answers from the event loop (PostgreSQL: the async driver; SQLite:
# the whole unit of work on one threadpool thread), no thread hop per dependency; a plain status
# call does not even solve the dependencies (``_status_route``, ``core.fastpath``).
@_status_route(
    "/{testId}/events",
    response_model=ExportJobOut,
    summary="Export status and download URL (getevents); without jobId, orders an export (getTestEvents)",
    description="With `jobId`: progress and status, and once finished a pre-signed `downloadUrl` that "
    "stays valid until the access token used for this call expires (export options are refused "
    "there). Without `jobId`: the seed's first call, which schedules the export with the same query "
    "options as `POST` and answers **200** (not 202, unlike `POST`) with the job and a `Location` "
    "header, as Inspera's job APIs do and their clients expect.",
)
@get_with_effects  # orders an export without jobId; records the link it issues
async def get_events(
    test_id: TestId,
    principal: ExportPrincipal,
    runtime: RuntimeDep,
    database: PgPoolDep,
    request: Request,
    options: OptionsDep,
    job_id: JobId = None,
) -> Response:
    if job_id is None:
        # The seed's "first call" orders an export: 200, as Inspera answers.
        return await in_write_session(
            runtime, partial(_order, test_id, principal, runtime=runtime, options=options, status_code=200)
        )
    if has_options(request):
        raise Unprocessable(
            "Export options belong to the order, not to a status call.",
            details=[{"field": "jobId", "message": "export options cannot be combined with jobId"}],
        )
    return await _status(test_id, principal, runtime, database, job_id)


async def _status(
    test_id: int, principal: Principal, runtime: Runtime, pool: PgPool | None, job_id: str
) -> Response:
    if pool is not None:
        out = await service.issued_status_async(pool, principal, test_id, job_id, runtime.store)
    else:
        # SQLite: the read, then (a link in the answer) its audit entry as a writer of its own,
        # which waits for its turn in the event loop (``in_write_session``), not on a worker
        # thread: polls blocked on the write lock in threads would starve a writer that needs
        # a thread to commit (every poll then a 503 after the lock's timeout).
        job = await in_session(runtime, partial(_read_job, test_id, principal, job_id))
        if service.links(job, principal.expires_at):
            await in_write_session(runtime, partial(_record_links, principal, [job]))
        out = service.job_status(job, runtime.store, principal.expires_at)
    return model_response(out, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store"}


def _read_job(test_id: int, principal: Principal, job_id: str, session: Session) -> ExportJob:
    job = service.get_job(session, principal, test_id, job_id)
    session.expunge(job)  # its loaded values outlive the session
    return job


# Declared before ``/{testId}/events/{jobId}``: "jobs" is not a job id.
@router.get(
    "/{testId}/events/jobs",
    response_model=ExportJobList,
    summary="List the test's export jobs",
    description="Every export of the test ordered by the caller's tenant, newest first, with each job's "
    "status, options and (when finished) a `downloadUrl`. Keyset pagination: pass `nextCursor` as "
    "`cursor`.",
)
@get_with_effects  # records the download links it issues
async def list_jobs(
    test_id: TestId,
    principal: ExportPrincipal,
    runtime: RuntimeDep,
    job_status: Annotated[
        JobStatus | None, Query(alias="status", description="Only jobs in this state")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=200), ASCII_DIGITS, Query(description="Jobs per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`nextCursor` of the previous page")
    ] = None,
) -> Response:
    read = partial(
        service.read_job_page,
        principal=principal,
        test_id=test_id,
        status=job_status.value if job_status else None,
        limit=limit,
        cursor=cursor,
    )
    page, out = await in_session(runtime, partial(_read_page, read, principal, runtime.store))
    linked = page.linked(principal)
    if linked:
        # As the status call: the links' audit entries are a writer of their own that waits
        # its turn in the event loop (SQLite), committed before the links leave.
        await in_write_session(runtime, partial(_record_links, principal, linked))
    return model_response(out, headers=_NO_STORE)


def _read_page(
    read: Callable[[Session], service.JobPage], principal: Principal, store: ObjectStore, session: Session
) -> tuple[service.JobPage, ExportJobList]:
    """The page and its answer, links signed on the thread (up to 200 of them) not the loop."""
    page = read(session)
    for job in page.jobs:
        session.expunge(job)  # its loaded values outlive the session
    return page, page.out(principal, store)


def _record_links(principal: Principal, jobs: list[ExportJob], session: Session) -> None:
    service.record_links(session, principal, jobs)
    session.commit()  # the links' audit entries, before the links leave


@_status_route(
    "/{testId}/events/{jobId}",
    response_model=ExportJobOut,
    summary="Export status and download URL",
    description="The same as `GET /v1/test/{testId}/events?jobId=…`.",
)
@get_with_effects  # records the download link it issues
async def get_events_job(
    test_id: TestId,
    job_id: JobIdPath,
    principal: ExportPrincipal,
    runtime: RuntimeDep,
    database: PgPoolDep,
) -> Response:
    return await _status(test_id, principal, runtime, database, job_id)


@schema_router.get(
    "/schemas/export-file.schema.json",
    summary="JSON Schema of the export file",
    response_model=dict[str, object],
)
def export_schema() -> dict[str, object]:
    return export_file_schema()


@router.delete(
    "/{testId}/events",
    response_model=ExportJobOut,
    summary="Cancel a queued or running export",
)
def cancel_events(
    test_id: TestId,
    principal: ExportPrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    job_id: Annotated[str, Query(alias="jobId", description=_JOB_ID, **_JOB_ID_LIMITS)],
) -> ExportJobOut:
    return _cancel(test_id, principal, session, runtime, job_id)


@router.delete(
    "/{testId}/events/{jobId}",
    response_model=ExportJobOut,
    summary="Cancel a queued or running export",
    description="The same as `DELETE /v1/test/{testId}/events?jobId=…`.",
)
def cancel_events_job(
    test_id: TestId,
    job_id: JobIdPath,
    principal: ExportPrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
) -> ExportJobOut:
    return _cancel(test_id, principal, session, runtime, job_id)


def _cancel(
    test_id: int, principal: ExportPrincipal, session: SessionDep, runtime: RuntimeDep, job_id: str
) -> ExportJobOut:
    job = service.cancel_export(session, principal, test_id, job_id)
    session.commit()
    return service.job_status(job, runtime.store, principal.expires_at)
