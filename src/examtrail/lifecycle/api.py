"""Erasure and legal hold (scope ``erase``): ``DELETE`` a candidate or a test, hold a test."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from examtrail.auth.deps import ErasePrincipal
from examtrail.core.schemas import NO_CONTROL
from examtrail.deps import RuntimeDep, SessionDep, WriteSessionDep
from examtrail.ingest.api import TestId, UserId
from examtrail.lifecycle import repository, service
from examtrail.lifecycle.models import ErasureStatus
from examtrail.lifecycle.schemas import ErasureJobOut, HoldOut

router = APIRouter(tags=["lifecycle"])

ErasureId = Annotated[
    str,
    Path(
        alias="jobId",
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL,
        description="The erasure's id, as answered by the DELETE",
    ),
]
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    status.HTTP_202_ACCEPTED: {
        "model": ErasureJobOut,
        "description": "Large erasure: accepted and running in the background; poll `Location`. "
        "The data is already out of every read and export.",
    }
}
_ERASURE = (
    "Erasure is **irreversible**. From the moment it is accepted nothing of the erased data can be "
    "read or exported; every finished or running export of the test that may hold it becomes "
    "`expired` (its file is deleted; of a candidate's, only a `userId` filter that leaves it out "
    "spares one, not a `candidateId` filter, as the candidate may have been renamed since). Then "
    "its events, attachment rows and stored files are deleted. Up to "
    "`EXAMTRAIL_ERASURE_SYNC_MAX_EVENTS` events this happens within the request (**200**, "
    "`status: finished`); beyond, a background job does it (**202**, poll `GET /v1/erasures/{jobId}`). "
    "Idempotent: repeating the call answers the same erasure (a failed one is started again). "
    "A test under legal hold answers **409** `legal_hold` and nothing is deleted."
)


def _answer(
    accepted: service.Accepted, session: SessionDep, runtime: RuntimeDep, response: Response, sync_max: int
) -> ErasureJobOut:
    session.commit()
    job = accepted.job
    if accepted.created:
        if job.events_total <= sync_max:
            # Small: done within the request. Should it not finish, the sweeper takes it over.
            service.run_job(runtime, job.id)
        else:
            runtime.queue.send(service.RUN_TASK, job.id)
    loaded = repository.load_job(session, job.id)
    assert loaded is not None
    done = loaded.status in (ErasureStatus.FINISHED, ErasureStatus.FAILED)
    response.status_code = status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/v1/erasures/{job.id}"
    response.headers["Cache-Control"] = "no-store"
    return service.job_out(loaded)


@router.delete(
    "/v1/test/{testId}/candidates/{userId}",
    response_model=ErasureJobOut,
    responses=_ACCEPTED,
    summary="Erase a candidate: events, files and exports holding them",
    description="Deletes the candidate, its events and attachments (rows and stored files) and every "
    "export file of the test that contains the candidate. " + _ERASURE,
)
def erase_candidate(
    test_id: TestId,
    user_id: UserId,
    principal: ErasePrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> ErasureJobOut:
    accepted = service.erase_candidate(session, principal, test_id, user_id)
    return _answer(accepted, session, runtime, response, runtime.settings.erasure_sync_max_events)


@router.delete(
    "/v1/test/{testId}",
    response_model=ErasureJobOut,
    responses=_ACCEPTED,
    summary="Erase a whole test: candidates, events, files and exports",
    description="Deletes the test with all its candidates, events, attachments and export files; its "
    "export jobs become `expired`, then go with the test. The `testId` is free at once: a `PUT` "
    "creates a new, empty test. " + _ERASURE,
)
def erase_test(
    test_id: TestId,
    principal: ErasePrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> ErasureJobOut:
    accepted = service.erase_test(session, principal, test_id)
    return _answer(accepted, session, runtime, response, runtime.settings.erasure_sync_max_events)


@router.get(
    "/v1/erasures/{jobId}",
    response_model=ErasureJobOut,
    summary="Status of an erasure",
    description="Progress of an erasure ordered by the caller's tenant: `finished` once every row and "
    "stored file is gone.",
)
def get_erasure(
    job_id: ErasureId, principal: ErasePrincipal, session: SessionDep, response: Response
) -> ErasureJobOut:
    response.headers["Cache-Control"] = "no-store"
    return service.job_out(service.get_job(session, principal, job_id))


@router.get(
    "/v1/test/{testId}/hold",
    response_model=HoldOut,
    summary="Whether the test is under legal hold",
)
def get_hold(test_id: TestId, principal: ErasePrincipal, session: SessionDep) -> HoldOut:
    return service.get_hold(session, principal, test_id)


@router.put(
    "/v1/test/{testId}/hold",
    response_model=HoldOut,
    summary="Put the test under legal hold",
    description="While held, erasure of the test or of any of its candidates answers 409 `legal_hold`, "
    "and retention keeps its export files: nothing of the test is deleted. Idempotent.",
)
def put_hold(test_id: TestId, principal: ErasePrincipal, session: WriteSessionDep) -> HoldOut:
    held = service.set_hold(session, principal, test_id)
    session.commit()
    return held


@router.delete(
    "/v1/test/{testId}/hold",
    response_model=HoldOut,
    summary="Release the test's legal hold",
    description="Erasure and retention apply to the test again. Idempotent.",
)
def delete_hold(test_id: TestId, principal: ErasePrincipal, session: WriteSessionDep) -> HoldOut:
    released = service.release_hold(session, principal, test_id)
    session.commit()
    return released
