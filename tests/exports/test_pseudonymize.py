"""Pseudonymised exports (``pseudonymize=true``): stable per-tenant pseudonyms instead of
``userId`` and ``candidateId``, no comments, no ``extraInfo.value``, no attachments, in
every format, on both deployments."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import re
import threading
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.auth.models import Tenant
from examtrail.core.db import transaction
from examtrail.exports import pseudonyms as pseudonyms_module
from examtrail.exports.models import PseudonymKey
from examtrail.exports.pseudonyms import Pseudonyms, secret_box, tenant_pseudonyms
from examtrail.exports.schemas import export_file_schema
from examtrail.runtime import Runtime
from tests.exports.test_export_options import download, order

PSEUDONYM = re.compile(r"^p_[a-z2-7]{26}$")
COMMENT = "Candidate Alice Example was seen with a phone"
SECRET_VALUE = "alice.example@uni.test"
CANDIDATE_IDS = {100: "ALICE-0001", 101: "BOB-0002", 102: "CAROL-0003"}


def seed(http: TestClient, headers: dict[str, str], test_id: int) -> None:
    assert http.put(f"/v1/test/{test_id}", json={"title": "t"}, headers=headers).status_code in (200, 201)
    people = [{"userId": u, "candidateId": c} for u, c in CANDIDATE_IDS.items()]
    assert http.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
    for user_id in (100, 101):
        events = [
            {
                "eventId": f"x{user_id}-1",
                "event": "flag",
                "timeStamp": "2026-06-01T09:00:00Z",
                "extraInfo": {"type": "email", "value": SECRET_VALUE},
                "flaggingInfo": {
                    "flagType": "phone",
                    "flagSubTypes": ["visible"],
                    "comment": COMMENT,
                    "severityLevel": "high",
                },
                "userId": 900001,
            },
            {"eventId": f"x{user_id}-2", "event": "submitted", "timeStamp": "2026-06-01T10:00:00Z"},
        ]
        url = f"/v1/test/{test_id}/candidates/{user_id}/events"
        assert http.post(url, json=events, headers=headers).status_code == 201
    url = f"/v1/test/{test_id}/candidates/100/events/x100-1/files/alice-photo.png"
    assert http.put(url, content=b"face", headers={**headers, "content-type": "image/png"}).status_code == 201


def tenant_key(runtime: Runtime, name: str) -> Pseudonyms:
    with transaction(runtime.sessions) as session:
        tenant_id = session.scalars(select(Tenant.id).where(Tenant.name == name)).one()
        return tenant_pseudonyms(session, secret_box(runtime.settings.secret_keyring()), tenant_id)


def expected_event(p: Pseudonyms, event: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(event)
    if event["userId"] is not None:
        event["userId"] = p.user(event["userId"])
    if event["extraInfo"]:
        del event["extraInfo"]["value"]
    if event["flaggingInfo"]:
        del event["flaggingInfo"]["comment"]
    event["attachedFiles"] = []
    return event


def assert_no_identities(raw: bytes) -> None:
    for secret in (COMMENT, SECRET_VALUE, "900001", "alice-photo", "presignedUrl", "/files/", "attachments/"):
        assert secret.encode() not in raw, secret
    for candidate_id in CANDIDATE_IDS.values():
        assert candidate_id.encode() not in raw
    for user_id in CANDIDATE_IDS:
        assert not re.search(rb'"(candidateUserId|userId)":%d\b' % user_id, raw)


def pseudonymised_schema() -> dict[str, Any]:
    """The export file schema with the documented differences of a pseudonymised file."""
    schema = copy.deepcopy(export_file_schema())
    text = json.dumps(schema)
    assert '"comment"' in text and '"value"' in text
    defs: dict[str, Any] = schema["$defs"]  # type: ignore[assignment]
    schema["$defs"] = defs
    defs["pseudonym"] = {"type": "string", "pattern": PSEUDONYM.pattern}
    found = 0

    def patch(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                if "userId" in props:
                    nullable = "null" in json.dumps(props["userId"])
                    props["userId"] = (
                        {"anyOf": [{"$ref": "#/$defs/pseudonym"}, {"type": "null"}]}
                        if nullable
                        else {"$ref": "#/$defs/pseudonym"}
                    )
                    found += 1
                if "candidateId" in props:
                    props["candidateId"] = {"$ref": "#/$defs/pseudonym"}
                for gone in ("comment", "value"):
                    if gone in props:
                        del props[gone]
                        node["required"] = [r for r in node.get("required", []) if r != gone]
                if "attachedFiles" in props:
                    props["attachedFiles"] = {"type": "array", "maxItems": 0}
            for value in node.values():
                patch(value)
        elif isinstance(node, list):
            for value in node:
                patch(value)

    patch(schema)
    assert found == 2
    return schema


def test_json_without_identities_matching_the_plain_export(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed(http, headers, 80)
    plain = json.loads(download(http, order(http, headers, 80)))
    status = order(http, headers, 80, {"pseudonymize": "true"})
    assert status["options"]["pseudonymize"] is True
    raw = download(http, status)
    assert_no_identities(raw)
    body = json.loads(raw)
    jsonschema.validate(body, pseudonymised_schema())
    assert status["eventsWritten"] == 4 and status["candidatesTotal"] == 3

    p = tenant_key(runtime, "uni-a")
    # Candidates in pseudonym order (the order of real ids would give the mapping away).
    users = [c["userId"] for c in body["candidates"]]
    assert users == sorted(users)
    expected = {
        p.user(c["userId"]): {
            "userId": p.user(c["userId"]),
            "candidateId": p.candidate(c["candidateId"]),
            "events": [expected_event(p, e) for e in c["events"]],
        }
        for c in plain["candidates"]
    }
    assert {c["userId"]: c for c in body["candidates"]} == expected
    assert all(PSEUDONYM.match(c["userId"]) and PSEUDONYM.match(c["candidateId"]) for c in body["candidates"])
    # userId and candidateId hash apart; the registering user (900001) is pseudonymised too.
    assert p.user(100) != p.candidate("100")
    flag = next(e for c in body["candidates"] for e in c["events"] if e["flaggingInfo"])
    assert flag["userId"] == p.user(900001)
    assert flag["flaggingInfo"] == {"flagType": "phone", "flagSubTypes": ["visible"], "severityLevel": "high"}
    assert flag["extraInfo"] == {"type": "email"}


def test_stable_across_exports_and_formats_and_distinct_per_tenant(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], runtime: Runtime
) -> None:
    seed(http, headers, 81)
    seed(http, other_headers, 81)
    first = json.loads(download(http, order(http, headers, 81, {"pseudonymize": "true"})))
    # A later export of another test of the same tenant: the same people, the same pseudonyms.
    seed(http, headers, 82)
    again = json.loads(download(http, order(http, headers, 82, {"pseudonymize": "true"})))
    ids = {(c["userId"], c["candidateId"]) for c in first["candidates"]}
    assert ids == {(c["userId"], c["candidateId"]) for c in again["candidates"]}
    other = json.loads(download(http, order(http, other_headers, 81, {"pseudonymize": "true"})))
    other_ids = {c["userId"] for c in other["candidates"]} | {c["candidateId"] for c in other["candidates"]}
    assert not other_ids & ({u for u, _ in ids} | {c for _, c in ids})

    users = {c["userId"] for c in first["candidates"]}
    lines_raw = download(http, order(http, headers, 81, {"pseudonymize": "true", "format": "jsonl"}))
    assert_no_identities(lines_raw)
    lines = [json.loads(line) for line in lines_raw.splitlines()]
    assert len(lines) == 4
    assert {line["candidateUserId"] for line in lines} <= users
    assert all(line["receivedAt"] and line["attachedFiles"] == [] for line in lines)

    csv_status = order(http, headers, 81, {"pseudonymize": "true", "format": "csv", "compression": "gzip"})
    csv_raw = gzip.decompress(download(http, csv_status))
    # The header keeps every column (spreadsheets and scripts stay the same); they are empty.
    assert_no_identities(csv_raw.split(b"\r\n", 1)[1])
    rows = list(csv.DictReader(io.StringIO(csv_raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == 4
    assert {row["candidateUserId"] for row in rows} <= users
    assert all(row["flaggingInfo.comment"] == "" and row["extraInfo.value"] == "" for row in rows)
    assert all(row["attachedFiles.presignedUrl"] == "" for row in rows)

    # The key is stored once per tenant, sealed (never the raw key).
    with runtime.sessions() as session:
        sealed = list(session.scalars(select(PseudonymKey.sealed_key)))
    assert len(sealed) == 2 and all(s.startswith("v2.") for s in sealed)


def test_option_is_part_of_reuse_and_the_job_list(http: TestClient, headers: dict[str, str]) -> None:
    seed(http, headers, 83)
    plain = order(http, headers, 83)
    pseudo = order(http, headers, 83, {"pseudonymize": "true"})
    assert pseudo["jobId"] != plain["jobId"]
    assert plain["options"]["pseudonymize"] is False
    # Nothing changed since: the same options are answered with the finished job.
    assert order(http, headers, 83, {"pseudonymize": "true"})["jobId"] == pseudo["jobId"]
    assert order(http, headers, 83, {"pseudonymize": "false"})["jobId"] == plain["jobId"]
    listed = http.get("/v1/test/83/events/jobs", headers=headers).json()["jobs"]
    assert {job["jobId"]: job["options"]["pseudonymize"] for job in listed} == {
        plain["jobId"]: False,
        pseudo["jobId"]: True,
    }
    bad = http.post("/v1/test/83/events", params={"pseudonymize": "maybe"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "pseudonymize"


def test_concurrent_first_uses_agree_on_one_key(runtime: Runtime, http: TestClient) -> None:
    with transaction(runtime.sessions) as session:
        tenant = Tenant(name="uni-race")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    box = secret_box(runtime.settings.secret_keyring())
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def first_use() -> None:
        try:
            start.wait()
            with transaction(runtime.sessions) as session:
                results.append(tenant_pseudonyms(session, box, tenant_id).user(100))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors and runtime.engine.dialect.name == "sqlite":
        # SQLite: concurrent writers may be told the database is locked; never two keys.
        assert all("locked" in str(e) for e in errors), errors
    else:
        assert not errors, errors
    assert len(set(results)) == 1
    with runtime.sessions() as session:
        keys = session.scalars(select(PseudonymKey).where(PseudonymKey.tenant_id == tenant_id))
        assert len(list(keys)) == 1


def test_unreadable_key_fails_the_job_clearly(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(http, headers, 84)
    order(http, headers, 84, {"pseudonymize": "true"})  # creates the key
    real = pseudonyms_module.secret_box
    monkeypatch.setattr(pseudonyms_module, "secret_box", lambda _keys: real([b"another secret key"]))
    from examtrail.exports import service

    monkeypatch.setattr(service, "secret_box", pseudonyms_module.secret_box)
    ingest = {"eventId": "late", "event": "tick", "timeStamp": "2026-06-01T11:00:00Z"}
    assert http.post("/v1/test/84/candidates/100/events", json=ingest, headers=headers).status_code == 201
    ordered = http.post("/v1/test/84/events", params={"pseudonymize": "true"}, headers=headers).json()
    from tests.support.api import wait_for_job

    status = wait_for_job(http, headers, 84, ordered["jobId"])
    assert status["status"] == "failed"
    assert status["error"]["code"] == "pseudonym_key_unavailable"


def test_pseudonyms_survive_secret_key_rotation_and_reencrypt(runtime: Runtime) -> None:
    old, new = b"old secret key " * 3, b"new secret key " * 3
    with transaction(runtime.sessions) as session:
        tenant = Tenant(name="uni-rotation")
        session.add(tenant)
        session.flush()
        before = tenant_pseudonyms(session, secret_box([old]), tenant.id).user(1234)
        # Rotation: the new key first, the old one still configured; then keys reencrypt.
        assert tenant_pseudonyms(session, secret_box([new, old]), tenant.id).user(1234) == before
        moved = pseudonyms_module.reencrypt_keys(session, [new, old])
        assert moved.moved >= 1 and moved.unreadable == 0
        # The old key removed: the re-sealed key opens and gives the same pseudonyms.
        assert tenant_pseudonyms(session, secret_box([new]), tenant.id).user(1234) == before
