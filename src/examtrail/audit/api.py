"""``GET /v1/audit`` (scope ``audit``): the tenant's audit log, filtered, newest first.

Audit is the lowest feature (every other one records into it), so it cannot import the
authentication dependencies of ``auth``: the application's top passes the scope check in
(:func:`build_router`), as it passes hooks to exports.
"""

# No ``from __future__ import annotations``: the route's annotations name a local dependency.
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Response, Security
from pydantic import Field

from examtrail.audit import service
from examtrail.audit.actions import Action
from examtrail.audit.schemas import AuditPage
from examtrail.core.schemas import ASCII_DIGITS, Int64Id
from examtrail.core.security import Principal
from examtrail.deps import SessionDep

ACTIONS_DOC = ", ".join(f"`{action}`" for action in Action)

DESCRIPTION = (
    "Every audited action of the caller's tenant, newest first: who (`clientId`, `sourceIp`, "
    "`requestId`), what (`action`), on what (`objectType`, `objectId`, `testId`) and counts in "
    "`details`; never secrets or event content. Entries are written in the same transaction as the "
    f"action and never change. Actions: {ACTIONS_DOC}. Keyset pagination: pass `nextCursor` as "
    "`cursor`. Scope `audit`."
)


def build_router(audit_scope: Callable[..., Principal | Awaitable[Principal]]) -> APIRouter:
    """The router; ``audit_scope`` is the dependency that checks the token has scope ``audit``."""
    router = APIRouter(tags=["audit"])
    AuditPrincipal = Annotated[Principal, Security(audit_scope, scopes=["audit"])]  # noqa: N806

    @router.get("/v1/audit", response_model=AuditPage, summary="The audit log", description=DESCRIPTION)
    def list_audit_entries(
        principal: AuditPrincipal,
        session: SessionDep,
        response: Response,
        action: Annotated[list[Action] | None, Query(description="Only these actions (repeatable)")] = None,
        test_id: Annotated[
            Int64Id | None, Query(alias="testId", description="Only entries about this test")
        ] = None,
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                json_schema_extra={"format": "date-time"},
                description="Entries at or after this instant (RFC 3339 with zone)",
                examples=["2026-06-01T08:00:00Z"],
            ),
        ] = None,
        to: Annotated[
            str | None,
            Query(
                json_schema_extra={"format": "date-time"},
                description="Entries before this instant (RFC 3339 with zone)",
            ),
        ] = None,
        limit: Annotated[
            int, Field(ge=1, le=service.MAX_LIMIT), ASCII_DIGITS, Query(description="Entries per page")
        ] = service.DEFAULT_LIMIT,
        cursor: Annotated[
            str | None, Query(max_length=200, description="`nextCursor` of the previous page")
        ] = None,
    ) -> AuditPage:
        response.headers["Cache-Control"] = "no-store"
        return service.list_entries(
            session,
            principal.tenant_id,
            actions=[str(a) for a in action or []],
            test_id=test_id,
            since=from_,
            until=to,
            limit=limit,
            cursor=cursor,
        )

    return router
