"""Batches over 16 events (binary COPY on PostgreSQL, ``executemany`` on SQLite): escapes,
unicode, limits and huge values come back byte for byte, and re-sent they are duplicates."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.ingest.models import Event
from examtrail.runtime import Runtime
from tests.support.api import seed_test

URL = "/v1/test/42/candidates/100/events"


def _event(n: int, **fields: Any) -> dict[str, Any]:
    return {"eventId": f"ev-{n}", "event": "network_lost", "timeStamp": "2026-06-01T10:00:00Z", **fields}


def test_a_copied_batch_stores_every_value_as_sent(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """Over 16 events (COPY on PostgreSQL), each nasty value as a name, an extraInfo and a
    comment; the same events again one by one are duplicates (the same docs, not 409s)."""
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    # Names at their limit of 200 characters (800 bytes of UTF-8), texts at 10,000.
    names = [
        "back\\slash \\N \\t",
        "\\",
        "\\\\",
        "\u00e9\u4e2d\U0001f600 \u2014",
        "x" * 200,
        "\U0001f600" * 200,
    ]
    texts = [*names, "tab\there\nline\r\nend", "\\N", "\t", "\u00e9\\\t" * 3000, "\U0001f600" * 10_000, ""]
    body = [_event(n, event=names[n % len(names)], userId=n) for n in range(20)]
    for n, text in enumerate(texts):
        flag = {"flagType": names[n % len(names)], "comment": text, "flagSubTypes": [names[n % len(names)]]}
        body.append(_event(100 + n, extraInfo={"type": names[n % len(names)], "value": text}))
        body.append(_event(200 + n, flaggingInfo=flag))
    response = http.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["created"] == len(body)
    with runtime.sessions() as session:
        rows = {row.event_id: row for row in session.execute(select(Event.event_id, Event.event, Event.doc))}
    for sent in body:
        row = rows[sent["eventId"]]
        assert row.event == sent["event"]
        doc = orjson.loads(row.doc)
        for key in ("extraInfo", "userId"):
            assert doc[key] == sent.get(key)
        if "flaggingInfo" in sent:
            assert doc["flaggingInfo"]["comment"] == sent["flaggingInfo"]["comment"]
            assert doc["flaggingInfo"]["flagType"] == sent["flaggingInfo"]["flagType"]
    for sent in body[::7]:
        again = http.post(URL, json=sent, headers=headers)
        assert again.status_code == 200, again.text
