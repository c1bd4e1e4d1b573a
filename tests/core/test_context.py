"""The request id: taken from the caller when sane, generated otherwise, always echoed."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_request_id_is_generated_and_echoed(http: TestClient) -> None:
    first = http.get("/healthz").headers["x-request-id"]
    second = http.get("/healthz").headers["x-request-id"]
    assert len(first) == 32 and first != second


def test_the_callers_request_id_is_kept(http: TestClient) -> None:
    answer = http.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42"})
    assert answer.headers["x-request-id"] == "lb-7f3a:42"


def test_an_insane_request_id_is_replaced(http: TestClient) -> None:
    answer = http.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert answer.headers["x-request-id"] != "a b\tc" + "x" * 200
    assert len(answer.headers["x-request-id"]) == 32


def test_error_answers_carry_the_request_id(http: TestClient) -> None:
    answer = http.get("/v1/test/1/events", headers={"X-Request-ID": "req-1"})
    assert answer.status_code == 401
    assert answer.headers["x-request-id"] == "req-1"
