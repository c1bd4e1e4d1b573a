"""Every bad input is a clear 4xx in the one error shape; Inspera-style calls answer as Inspera does."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.support.api import seed_test, wait_for_job

FILES = "/v1/test/42/candidates/100/events/ev-1/files/"


@pytest.fixture
def event_1(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    response = http.post(
        "/v1/test/42/candidates/100/events",
        json={"eventId": "ev-1", "event": "phone_seen", "timeStamp": "2026-06-01T10:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 201, response.text


# --- Inspera compatibility ------------------------------------------------------------


def test_get_order_answers_200_and_post_202(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=5)
    ordered = http.get("/v1/test/5/events", headers=headers)
    assert ordered.status_code == 200
    job_id = ordered.json()["jobId"]
    assert ordered.headers["Location"] == f"/v1/test/5/events?jobId={job_id}"
    again = http.post("/v1/test/5/events", headers=headers)
    assert again.status_code == 202
    assert again.headers["Location"].endswith(again.json()["jobId"])


def test_job_id_as_a_path_segment(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=6)
    job_id = http.post("/v1/test/6/events", headers=headers).json()["jobId"]
    done = wait_for_job(http, headers, 6, job_id)
    by_path = http.get(f"/v1/test/6/events/{job_id}", headers=headers)
    assert by_path.status_code == 200
    assert by_path.json()["status"] == done["status"] == "finished"
    assert by_path.json()["sha256"] == done["sha256"]
    cancelled = http.delete(f"/v1/test/6/events/{job_id}", headers=headers)
    assert cancelled.status_code == 409
    assert cancelled.json()["error"] == "job_not_cancellable"
    missing = http.get("/v1/test/6/events/nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "job_not_found"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("PATCH", "/v1/test/1/events", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_answer_json(
    http: TestClient, method: str, path: str, status: int, error: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    assert set(response.json()) == {"error", "message", "details"}


def test_root_redirects_to_docs(http: TestClient) -> None:
    response = http.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["Location"] == "/docs"


# --- 401 challenges ----------------------------------------------------------------


def test_401_carries_an_rfc6750_challenge(http: TestClient) -> None:
    missing = http.get("/v1/subscription")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    bad = http.get("/v1/subscription", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


# --- content types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/test/42", b'{"title": "T"}'),
        ("PUT", "/v1/test/42/candidates", b'[{"userId": 1, "candidateId": "a"}]'),
        (
            "POST",
            "/v1/test/42/candidates/100/events",
            b'{"event": "idle_warning", "timeStamp": "2026-06-01T10:00:00Z"}',
        ),
        ("POST", "/v1/subscription", b'{"event": "event_by_candidates_export_finished", "endpoint": "x"}'),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_routes_refuse_other_content_types(
    http: TestClient,
    headers: dict[str, str],
    event_1: None,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
) -> None:
    sent = dict(headers)
    if content_type:
        sent["Content-Type"] = content_type
    response = http.request(method, path, content=body, headers=sent)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"
    assert "application/json" in response.json()["message"]


def test_json_with_charset_is_accepted(http: TestClient, headers: dict[str, str]) -> None:
    response = http.put(
        "/v1/test/43",
        content=b'{"title": "T"}',
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_multipart_upload_is_refused_with_a_hint(
    http: TestClient, headers: dict[str, str], event_1: None
) -> None:
    response = http.put(FILES + "photo.jpg", files={"file": ("photo.jpg", b"\xff\xd8jpeg")}, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert "raw bytes" in response.json()["message"]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_upload_without_a_real_type_is_octet_stream(
    http: TestClient, headers: dict[str, str], event_1: None, content_type: str | None
) -> None:
    sent = dict(headers)
    if content_type:
        sent["Content-Type"] = content_type
    response = http.put(FILES + "log.bin", content=b"\x00\x01raw", headers=sent)
    assert response.status_code == 201, response.text
    assert response.json()["contentType"] == "application/octet-stream"


def test_upload_keeps_its_own_type(http: TestClient, headers: dict[str, str], event_1: None) -> None:
    response = http.put(FILES + "p.png", content=b"\x89PNG", headers={**headers, "Content-Type": "image/png"})
    assert response.status_code == 201
    assert response.json()["contentType"] == "image/png"


# --- file names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_name", "words"),
    [
        ("%2E%2E", "'..'"),
        ("a..b", "'..'"),
        ("a%5Cb", "'\\'"),
        ("a%2Fb", "'/'"),
        ("bell%07", "control characters"),
        ("x" * 256, "255 bytes"),
        ("%C3%A6" * 128, "255 bytes"),  # 128 characters, 256 bytes
    ],
)
def test_bad_file_names_are_422_with_a_clear_message(
    http: TestClient, headers: dict[str, str], event_1: None, raw_name: str, words: str
) -> None:
    url = httpx.URL("http://testserver" + FILES + raw_name)
    response = http.put(str(url), content=b"x", headers=headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"][0]["field"] == "fileName"
    assert words in body["details"][0]["message"]
    assert "pattern" not in body["details"][0]["message"]


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"title": ""}, {"title": "   "}])
def test_a_test_needs_a_title(http: TestClient, headers: dict[str, str], body: dict[str, str]) -> None:
    response = http.put("/v1/test/44", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "title"


# --- local download links ------------------------------------------------------------------


def test_head_on_a_local_download_link(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    if runtime.settings.storage != "local":
        pytest.skip("the app serves links only for the local store")
    seed_test(http, headers, test_id=7)
    job_id = http.post("/v1/test/7/events", headers=headers).json()["jobId"]
    status = wait_for_job(http, headers, 7, job_id)
    url = httpx.URL(status["downloadUrl"])
    head = http.head(url.raw_path.decode())
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == status["fileSize"]
    assert head.content == b""


JSON_ROUTES = [
    ("PUT", "/v1/test/42"),
    ("PUT", "/v1/test/42/candidates"),
    ("POST", "/v1/test/42/candidates/100/events"),
    ("POST", "/v1/subscription"),
]
NOT_JSON = {
    "invalid UTF-8": b'{"title": "\xff"}',
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "an integer of 5,000 digits": b'{"title": ' + b"9" * 5000 + b"}",
    "a byte order mark": b'\xef\xbb\xbf{"title": "T"}',
    "UTF-16": '{"title": "T"}'.encode("utf-16"),
    "a lone surrogate": b'{"title": "\\ud800"}',
    "empty": b"",
    "blank": b"  \n",
}


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("problem", list(NOT_JSON))
def test_every_json_route_refuses_what_is_not_json_alike(
    http: TestClient, headers: dict[str, str], event_1: None, method: str, path: str, problem: str
) -> None:
    """FastAPI's own reading of a body answered 400 ``http_error`` (undocumented) for the first
    three, accepted a byte order mark or UTF-16 and answered 422 to an empty body, where the
    events call, reading its body itself, answered 400 ``malformed_json`` to each."""
    sent = {**headers, "Content-Type": "application/json"}
    response = http.request(method, path, content=NOT_JSON[problem], headers=sent)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_json", response.text
    # Without a content type (and so without a body): the same answer.
    if not NOT_JSON[problem]:
        response = http.request(method, path, headers=headers)
        assert (response.status_code, response.json()["error"]) == (400, "malformed_json"), response.text
    assert http.get("/v1/test/42", headers=headers).json()["title"] == "Test 42"  # nothing stored
