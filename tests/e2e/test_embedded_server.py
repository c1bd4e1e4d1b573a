"""The embedded default end to end: a real ``examtrail serve`` process driven over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from examtrail.exports.schemas import export_file_schema
from tests.support.api import bearer, get_token, wait_for_job
from tests.support.processes import ExamtrailProcess, run_cli

pytestmark = pytest.mark.slow

TOKEN_TTL = 4


@pytest.fixture
def server_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The server's environment; ``@pytest.mark.server_env(NAME=value)`` adds to it."""
    marker = request.node.get_closest_marker("server_env")
    return {
        "EXAMTRAIL_DATA_DIR": str(tmp_path / "data"),
        "EXAMTRAIL_TOKEN_TTL_SECONDS": str(TOKEN_TTL),
        "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5",
        **(marker.kwargs if marker else {}),
    }


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ExamtrailProcess]:
    migrated = run_cli(["db", "upgrade"], server_env)
    assert migrated.returncode == 0, migrated.stderr
    with ExamtrailProcess.server(server_env, tmp_path / "logs") as process:
        yield process


def new_client(env: dict[str, str], tenant: str) -> tuple[str, str]:
    created = run_cli(["clients", "create", "--tenant", tenant, "--scopes", "ingest,export", "--json"], env)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    return body["clientId"], body["apiKey"]


def test_token_ingest_export_download_expiry_and_tenancy(
    server: ExamtrailProcess, server_env: dict[str, str]
) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=10)
    headers = bearer(get_token(http, *new_client(server_env, "uni-a")))

    assert http.put("/v1/test/555", json={"title": "Final"}, headers=headers).status_code == 201
    people = [
        {"userId": 2, "candidateId": "B"},
        {"userId": 1, "candidateId": "A"},
        {"userId": 3, "candidateId": "C"},
    ]
    assert http.put("/v1/test/555/candidates", json=people, headers=headers).status_code == 200
    sent = {
        1: [
            {
                "eventId": "1-login",
                "event": "new_seb_login",
                "timeStamp": "2026-06-01T09:00:00.000Z",
                "extraInfo": {"type": "sebVersion", "value": "3.7.1"},
                "flaggingInfo": None,
                "userId": None,
            },
            {
                "eventId": "1-flag",
                "event": "flag",
                "timeStamp": "2026-06-01T09:30:00.250Z",
                "extraInfo": None,
                "flaggingInfo": {
                    "flagType": "suspicious",
                    "flagSubTypes": ["phone"],
                    "comment": "phone on desk",
                    "severityLevel": "high",
                },
                "userId": 9001,
            },
        ],
        2: [
            {
                "eventId": "2-lost",
                "event": "network_lost",
                "timeStamp": "2026-06-01T09:10:00.000Z",
                "extraInfo": None,
                "flaggingInfo": None,
                "userId": None,
            }
        ],
    }
    for user_id, events in sent.items():
        response = http.post(f"/v1/test/555/candidates/{user_id}/events", json=events, headers=headers)
        assert response.status_code == 201, response.text
    evidence = b"evidence bytes \x00\x01" * 100
    uploaded = http.put(
        "/v1/test/555/candidates/1/events/1-flag/files/evidence.bin",
        content=evidence,
        headers={**headers, "content-type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201, uploaded.text

    ordered = http.post("/v1/test/555/events", headers=headers)
    assert ordered.status_code == 202
    job_id = ordered.json()["jobId"]
    status = wait_for_job(http, headers, 555, job_id)
    assert status["status"] == "finished", status

    download = httpx.get(status["downloadUrl"], timeout=10)
    assert download.status_code == 200
    body = download.json()
    jsonschema.validate(body, export_file_schema())
    assert [c["userId"] for c in body["candidates"]] == [1, 2, 3]
    assert body["candidates"][2]["events"] == []
    files = {}
    for candidate in body["candidates"][:2]:
        for event in candidate["events"]:
            files[event["eventId"]] = event.pop("attachedFiles")
        assert candidate["events"] == sent[candidate["userId"]]
    assert files["1-login"] == [] and files["2-lost"] == []
    (attachment,) = files["1-flag"]
    assert attachment["fileName"] == "evidence.bin"
    assert attachment["fileSize"] == len(evidence)
    assert attachment["contentItemId"] == uploaded.json()["contentItemId"]
    assert httpx.get(attachment["presignedUrl"]).content == evidence

    # A second tenant cannot see the first tenant's test or job.
    other = bearer(get_token(http, *new_client(server_env, "uni-b")))
    assert http.post("/v1/test/555/events", headers=other).status_code == 404
    assert http.get("/v1/test/555/events", params={"jobId": job_id}, headers=other).status_code == 404

    # The link lives exactly as long as the token used to get it.
    expires = status["downloadUrlExpires"]
    assert expires.endswith("Z")
    time.sleep(TOKEN_TTL + 1.5)
    assert httpx.get(status["downloadUrl"]).status_code == 403
    assert httpx.get(attachment["presignedUrl"]).status_code == 403
    assert http.get("/v1/test/555/events", params={"jobId": job_id}, headers=headers).status_code == 401


# Tokens must outlive the test however slow a loaded machine makes it.
@pytest.mark.server_env(EXAMTRAIL_TOKEN_TTL_SECONDS="3600")
def test_concurrent_polling_and_ingestion_on_sqlite(
    server: ExamtrailProcess, server_env: dict[str, str]
) -> None:
    """Many readers and several writers at once: no lock errors, no stalls, no 5xx."""
    from concurrent.futures import ThreadPoolExecutor

    http = httpx.Client(base_url=server.base_url, timeout=30)
    headers = bearer(get_token(http, *new_client(server_env, "uni-a")))
    http.put("/v1/test/7", json={"title": "busy"}, headers=headers)
    http.put(
        "/v1/test/7/candidates",
        json=[{"userId": n, "candidateId": f"c{n}"} for n in range(8)],
        headers=headers,
    )
    job_id = http.post("/v1/test/7/events", headers=headers).json()["jobId"]
    wait_for_job(http, headers, 7, job_id)

    def poll(_: int) -> list[int]:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            return [
                client.get("/v1/test/7/events", params={"jobId": job_id}, headers=headers).status_code
                for _ in range(20)
            ]

    def ingest(user_id: int) -> list[int]:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            codes = []
            for n in range(10):
                batch = [
                    {"eventId": f"{user_id}-{n}-{k}", "event": "tick", "timeStamp": "2026-06-01T09:00:00Z"}
                    for k in range(50)
                ]
                codes.append(
                    client.post(
                        f"/v1/test/7/candidates/{user_id}/events", json=batch, headers=headers
                    ).status_code
                )
            return codes

    with ThreadPoolExecutor(max_workers=28) as pool:
        polls = pool.map(poll, range(20))
        writes = pool.map(ingest, range(8))
        poll_codes = [code for codes in polls for code in codes]
        write_codes = [code for codes in writes for code in codes]
    assert set(poll_codes) == {200}
    assert set(write_codes) == {201}
    assert http.get("/v1/test/7", headers=headers).json()["events"] == 8 * 10 * 50
