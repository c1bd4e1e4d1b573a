"""The export order's query parameters: the FastAPI dependency that parses them into
:class:`ExportOptions`. The options themselves live in ``exports.spec``,
which the worker reads without importing the web framework."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from examtrail.core.schemas import Int64Id
from examtrail.exports.spec import Compression, ExportFormat, ExportOptions, _Text

_OPTION_PARAMS = frozenset(
    (
        "userId",
        "candidateId",
        "event",
        "flagged",
        "severityLevel",
        "from",
        "to",
        "since",
        "format",
        "compression",
        "pseudonymize",
    )
)
# Parameters the export routes know besides the options.
_OTHER_PARAMS = frozenset(("jobId",))


async def order_options(
    request: Request,
    user_ids: Annotated[
        list[Int64Id] | None,
        Query(alias="userId", description="Only these candidates (userId; repeatable)."),
    ] = None,
    candidate_ids: Annotated[
        list[_Text] | None,
        Query(alias="candidateId", description="Only these candidates (candidateId; repeatable)."),
    ] = None,
    events: Annotated[
        list[_Text] | None,
        Query(alias="event", description="Only events with these names (case-sensitive; repeatable)."),
    ] = None,
    flagged: Annotated[
        bool | None, Query(description="`true`: only events with `flaggingInfo` (invigilator flags).")
    ] = None,
    severity_levels: Annotated[
        list[_Text] | None,
        Query(alias="severityLevel", description="Only flags of these severities (repeatable)."),
    ] = None,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            json_schema_extra={"format": "date-time"},
            description="Only events with `timeStamp` at or after this instant (RFC 3339 with zone).",
            examples=["2026-06-01T08:00:00Z"],
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            json_schema_extra={"format": "date-time"},
            description="Only events with `timeStamp` before this instant (RFC 3339 with zone).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="An earlier export's `nextSince`: only events ingested after that export's snapshot "
            "(late flags on early timestamps included)."
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat,
        Query(
            alias="format",
            description="`json` (the seed's file), `jsonl` (one event per line with `candidateUserId` and "
            "`candidateId`) or `csv` (UTF-8 with BOM, RFC 4180).",
        ),
    ] = ExportFormat.JSON,
    compression: Annotated[
        Compression,
        Query(description="`none` or `gzip` (the stored object is gzip-compressed, name ends `.gz`)."),
    ] = Compression.NONE,
    pseudonymize: Annotated[
        bool | None,
        Query(
            description="`true`: a research export without identities (pseudonymisation, not "
            "anonymisation). `userId` (candidates' and events') and `candidateId` become stable "
            "pseudonyms (`p_` + 26 base32 characters, a keyed HMAC per tenant: the same in every "
            "export of the tenant, so files can be joined; userId and candidateId hash apart); "
            "`flaggingInfo.comment` and `extraInfo.value` are removed, `attachedFiles` is empty; "
            "candidates are listed in pseudonym order. Timestamps, event names, eventIds and flag "
            "types stay and may still identify someone. Any format; the JSON file then differs from "
            "the export file schema in exactly those fields."
        ),
    ] = None,
) -> ExportOptions:
    """The FastAPI dependency of the order calls: the query's options, validated (422
    names the field: unknown parameters, bad values, ``from >= to``, a malformed ``since``)."""
    # ``jobId`` names a job to read (GET); an order given one would quietly ignore it.
    others = _OTHER_PARAMS if request.method != "POST" else frozenset()
    unknown = sorted(set(request.query_params) - _OPTION_PARAMS - others)
    if unknown:
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": f"Unknown parameter '{name}'"}
                for name in unknown
            ]
        )
    raw: dict[str, Any] = {"format": fmt, "compression": compression}
    for name, value in (
        ("userId", user_ids),
        ("candidateId", candidate_ids),
        ("event", events),
        ("flagged", flagged),
        ("severityLevel", severity_levels),
        ("from", from_),
        ("to", to),
        ("since", since),
        ("pseudonymize", pseudonymize),
    ):
        if value is not None:
            raw[name] = value
    try:
        return ExportOptions.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            loc = tuple("from" if part == "from_" else part for part in error["loc"])
            if not loc and "'from'" in error["msg"]:
                loc = ("from",)
            errors.append({**error, "loc": ("query", *loc)})
        raise RequestValidationError(errors) from None


def has_options(request: Request) -> bool:
    """Whether the query carries any export option (a status call must not)."""
    return any(name in _OPTION_PARAMS for name in request.query_params)


__all__ = ["ExportOptions", "has_options", "order_options"]
