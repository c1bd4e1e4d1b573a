"""Schemathesis hooks for the contract test (loaded through ``tests/contract/schemathesis.toml``).

Creating a subscription makes the server POST to the endpoint it is given. Generated endpoints
could name any host, and the test must only ever reach this machine: every endpoint the server
would accept is pointed at the local receiver (``EXAMTRAIL_CONTRACT_RECEIVER``) before the
request is sent. Endpoints the server refuses on syntax alone are left as they are.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import schemathesis

from examtrail.core.schemas import has_control
from examtrail.webhooks.sender import InvalidEndpointError, parse_endpoint


# Event times must lie in the years 1970 to 2999 once converted to UTC: JSON Schema's date-time
# format cannot say so (the operation's description does). Well-formed generated times are moved
# into the range, so a case is valid or invalid for the reasons the document states; the range
# itself is tested exactly in tests/security/test_hostile_input.py.
def _times_in_range(value: Any) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        stamp = item.get("timeStamp")
        if isinstance(stamp, str) and re.match(r"[0-9]{4}-", stamp):
            try:
                parsed = datetime.fromisoformat(stamp.replace("z", "Z"))
            except ValueError:
                continue
            if parsed.tzinfo is not None and not 1971 <= parsed.year <= 2998:
                item["timeStamp"] = "2020" + stamp[4:]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path.endswith("/events") and case.method.upper() == "POST":
        _times_in_range(case.body)
        if "json" in kwargs:
            _times_in_range(kwargs["json"])
    if case.operation.path != "/v1/subscription" or case.method.upper() != "POST":
        return
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("endpoint"), str):
        return
    try:
        parse_endpoint(body["endpoint"])
    except InvalidEndpointError:
        return  # refused before any connection
    body["endpoint"] = os.environ["EXAMTRAIL_CONTRACT_RECEIVER"]


# Within float rounding of 2**63, schemathesis' validator (which compares in double precision)
# labels out-of-range integers (2**63 + 190) as valid and valid ones as invalid. The server's
# int64 limits are tested exactly in tests/ingest; here such cases are skipped.
_INT64_LIMIT = 2**63
_FLOAT_SPACING = 2048


def _ambiguous(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(abs(value) - _INT64_LIMIT) <= _FLOAT_SPACING
    if isinstance(value, str) and len(value) < 40 and value.isascii() and value.lstrip("-").isdigit():
        return _ambiguous(int(value))
    if isinstance(value, dict):
        return any(_ambiguous(item) for item in value.values())
    if isinstance(value, list):
        return any(_ambiguous(item) for item in value)
    return False


# Cursors (`since`, `cursor`) are opaque: only the server makes valid ones, so generated values
# are refused (422) whatever the schema says; tests/exports covers them. A status call
# (`jobId`) refuses export options, which JSON Schema cannot express per parameter pair.
_OPTIONS = {"userId", "candidateId", "event", "flagged", "severityLevel", "from", "to", "since"}
_OPTIONS |= {"format", "compression", "pseudonymize"}


def _window_reversed(start: Any, end: Any) -> bool:
    if not isinstance(start, str) or not isinstance(end, str):
        return False
    try:
        return datetime.fromisoformat(start) >= datetime.fromisoformat(end)
    except (ValueError, TypeError):
        return False


def _unexpressible(case: Any) -> bool:
    query = case.query or {}
    if query.get("since") is not None or query.get("cursor") is not None:
        return True
    if _window_reversed(query.get("from"), query.get("to")):
        return True  # `from` must come before `to`: a rule between two parameters
    return query.get("jobId") is not None and any(query.get(name) is not None for name in _OPTIONS)


# A candidate list may not give one userId two candidateIds (the operation's description says
# so; JSON Schema cannot): such lists are a 422 by design, tested in tests/ingest.
def _contradictory_candidates(case: Any) -> bool:
    if not case.operation.path.endswith("/candidates") or not isinstance(case.body, list):
        return False
    seen: dict[Any, Any] = {}
    for item in case.body:
        if isinstance(item, dict) and isinstance(item.get("userId"), int | float):
            user_id, candidate_id = item["userId"], item.get("candidateId")
            if seen.setdefault(user_id, candidate_id) != candidate_id:
                return True
    return False


# A query string carries text only: a negative case that turns a string parameter into a number
# or a boolean sends text the schema accepts (`candidateId=0`), so the server rightly takes it.
# Such a mutation is only in the generator's view; cases whose every query mutation is one are
# skipped (strings that break the schema on the wire, or integers and booleans, still run).
def _string_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "array":
            branch = branch.get("items", {})
        if branch.get("type") == "string" and "format" not in branch and "format" not in schema:
            return dict(branch)
    return None


def _wire_text(value: Any) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str | int | float) for item in items):
        return None
    return [str(item).lower() if isinstance(item, bool) else str(item) for item in items]


def _fits(schema: dict[str, Any], text: str) -> bool:
    pattern = schema.get("pattern")
    return (
        schema.get("minLength", 0) <= len(text) <= schema.get("maxLength", len(text))
        and (pattern is None or re.search(pattern, text) is not None)
        and schema.get("enum", [text]).count(text) > 0
    )


def _unobservable_query_mutation(case: Any) -> bool:
    mutations = [m for m in getattr(case.meta.phase.data, "mutations", ()) if m.parameter_location == "query"]
    if not mutations or case.query is None:
        return False
    schemas = {parameter.name: parameter.definition.get("schema", {}) for parameter in case.operation.query}
    for mutation in mutations:
        schema = _string_schema(schemas.get(mutation.parameter, {}))
        texts = _wire_text(case.query.get(mutation.parameter))
        if schema is None or not texts or not all(_fits(schema, text) for text in texts):
            return False
    return True


# Schemathesis decodes a generated path value before encoding it, so a generated `%0B` reaches
# the server as a control character, which the document refuses: such "valid" cases are not.
def _decodes_to_control(case: Any) -> bool:
    values = (case.path_parameters or {}).values()
    return any(isinstance(value, str) and has_control(unquote(value)) for value in values)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    parts = (case.body, case.path_parameters, case.query)
    if _unexpressible(case) or _contradictory_candidates(case):
        return False
    if case.meta is not None and case.meta.generation.mode.is_negative and _unobservable_query_mutation(case):
        return False
    if case.meta is not None and not case.meta.is_negative_at("path") and _decodes_to_control(case):
        return False
    return not any(_ambiguous(part) for part in parts if part is not None)


# An integral float (`177959496.0`) is an integer to JSON Schema but is written with its `.0`,
# which the server refuses (ids are ASCII digits only, as documented): it is sent as `177959496`.
def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: Any) -> Any:
    if not isinstance(path_parameters, dict):
        return path_parameters  # a negative case may replace the whole container
    return {name: _integral(value) for name, value in path_parameters.items()}


@schemathesis.hook
def map_query(context: Any, query: Any) -> Any:
    if not isinstance(query, dict):
        return query
    return {name: _integral(value) for name, value in query.items()}
