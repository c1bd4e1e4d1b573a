"""HEAD on every GET route (RFC 9110 §9.3.2): the GET's status and headers, no body; routes with
their own HEAD (downloads, Starlette's) unchanged; a 405's ``Allow`` lists HEAD beside GET."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.support.api import seed_test

# Differ between any two answers, whatever the method.
VOLATILE = {"date", "x-request-id"}


def _same_as_get(http: TestClient, path: str, headers: dict[str, str] | None = None) -> None:
    got = http.get(path, headers=headers)
    head = http.head(path, headers=headers)
    assert head.status_code == got.status_code, (path, head.status_code, head.text)
    assert head.content == b""
    expected = {k: v for k, v in got.headers.items() if k not in VOLATILE}
    assert {k: v for k, v in head.headers.items() if k not in VOLATILE} == expected, path


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/.well-known/jwks.json", "/openapi.json", "/docs"])
def test_head_on_public_get_routes(http: TestClient, path: str) -> None:
    _same_as_get(http, path)


def test_head_on_protected_get_routes(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=1)
    for path in ("/v1/tests", "/v1/test/42", "/v1/test/42/candidates", "/v1/subscription"):
        _same_as_get(http, path, headers)
        _same_as_get(http, path)  # 401, with its WWW-Authenticate
    _same_as_get(http, "/v1/test/999", headers)  # 404 from the route


def test_head_where_no_get_is_served(http: TestClient) -> None:
    missing = http.head("/nope")
    assert missing.status_code == 404 and missing.content == b""
    # A POST-only path: 405, and its Allow has no GET or HEAD.
    refused = http.head("/api/authenticate/token/")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"


def test_allow_lists_head_beside_get(http: TestClient) -> None:
    refused = http.post("/healthz")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    refused = http.patch("/v1/test/1/events")
    # Its GET orders an export (Inspera's convention): HEAD must be safe, so it is not served.
    assert refused.headers["allow"] == "GET, POST, DELETE"


def test_no_head_on_gets_with_effects(http: TestClient, headers: dict[str, str]) -> None:
    """A GET that orders an export or records the download links it issues does not run for a
    HEAD: a 405 whose Allow has no HEAD, and nothing ordered."""
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=1)
    job_id = http.post("/v1/test/42/events", headers=headers).json()["jobId"]
    for path in (
        "/v1/test/42/events",
        f"/v1/test/42/events?jobId={job_id}",
        f"/v1/test/42/events/{job_id}",
        "/v1/test/42/events/jobs",
    ):
        refused = http.head(path, headers=headers)
        assert refused.status_code == 405, path
        assert "HEAD" not in refused.headers["allow"] and "GET" in refused.headers["allow"]
    jobs = http.get("/v1/test/42/events/jobs", headers=headers).json()["jobs"]
    assert [job["jobId"] for job in jobs] == [job_id]  # HEAD ordered nothing
    # The review page's timeline records the evidence links it hands out.
    refused = http.head("/ui/fragments/tests/42/candidates/100")
    assert refused.status_code == 405 and "HEAD" not in refused.headers["allow"]


def test_the_access_line_says_head(http: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="examtrail.access"):
        assert http.head("/healthz").status_code == 200
    (line,) = [r for r in caplog.records if r.name == "examtrail.access"]
    assert line.getMessage().startswith("HEAD /healthz 200 ")
