"""The seed's test events export API: ``/v1/test/{testId}/events`` (scope ``export``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from examtrail.auth.deps import ExportPrincipal
from examtrail.core.db import begin_write
from examtrail.deps import RuntimeDep, SessionDep, WriteSessionDep
from examtrail.exports import service
from examtrail.exports.schemas import ExportJobOut, export_file_schema
from examtrail.ingest.api import TestId

router = APIRouter(prefix="/v1/test", tags=["export"])
schema_router = APIRouter(tags=["export"])

_JOB_ID = "The export job's id, as answered when the export was ordered"
JobId = Annotated[str | None, Query(alias="jobId", min_length=1, max_length=64, description=_JOB_ID)]
JobIdPath = Annotated[str, Path(alias="jobId", min_length=1, max_length=64, description=_JOB_ID)]


def _order(
    test_id: int,
    principal: ExportPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
    status_code: int = status.HTTP_202_ACCEPTED,
) -> ExportJobOut:
    ordered = service.order_export(session, principal, test_id)
    session.commit()
    if ordered.created:
        # Only after the commit: a worker that wakes up must find the row.
        runtime.queue.send(service.RUN_TASK, ordered.job.id)
    response.status_code = status_code
    response.headers["Location"] = f"/v1/test/{test_id}/events?jobId={ordered.job.id}"
    return service.job_status(ordered.job, runtime.store, None)


@router.post(
    "/{testId}/events",
    response_model=ExportJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Order an export of the test's events (getTestEvents)",
    description="Schedules an asynchronous export and answers 202 with the job and a `Location` header. "
    "If an export of this test is already queued or running, that job is returned. "
    "`GET` on the same path without `jobId` does the same but answers 200 (Inspera's convention).",
)
def order_events(
    test_id: TestId,
    principal: ExportPrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> ExportJobOut:
    return _order(test_id, principal, session, runtime, response)


@router.get(
    "/{testId}/events",
    response_model=ExportJobOut,
    summary="Export status and download URL (getevents); without jobId, orders an export (getTestEvents)",
    description="With `jobId`: progress and status, and once finished a pre-signed `downloadUrl` that "
    "stays valid until the access token used for this call expires. Without `jobId`: the seed's "
    "first call, which schedules the export and answers **200** (not 202, unlike `POST`) with the "
    "job and a `Location` header, as Inspera's job APIs do and their clients expect.",
)
def get_events(
    test_id: TestId,
    principal: ExportPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
    job_id: JobId = None,
) -> ExportJobOut:
    if job_id is None:
        begin_write(session)  # the seed's "first call" orders an export: 200, as Inspera answers
        return _order(test_id, principal, session, runtime, response, status.HTTP_200_OK)
    return _status(test_id, principal, session, runtime, response, job_id)


def _status(
    test_id: int,
    principal: ExportPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
    job_id: str,
) -> ExportJobOut:
    job = service.get_job(session, principal, test_id, job_id)
    response.headers["Cache-Control"] = "no-store"
    return service.job_status(job, runtime.store, principal.expires_at)


@router.get(
    "/{testId}/events/{jobId}",
    response_model=ExportJobOut,
    summary="Export status and download URL",
    description="The same as `GET /v1/test/{testId}/events?jobId=…`.",
)
def get_events_job(
    test_id: TestId,
    job_id: JobIdPath,
    principal: ExportPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> ExportJobOut:
    return _status(test_id, principal, session, runtime, response, job_id)


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
    job_id: Annotated[str, Query(alias="jobId", min_length=1, max_length=64, description=_JOB_ID)],
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
