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

import schemathesis

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
_OPTIONS |= {"format", "compression"}


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


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    parts = (case.body, case.path_parameters, case.query)
    if _unexpressible(case):
        return False
    return not any(_ambiguous(part) for part in parts if part is not None)
