"""A one-value query parameter given twice is a 422 naming it, never its last value (found by
schemathesis at 1,500 examples: ``?pseudonymize=<garbage>&pseudonymize=true`` ordered an export);
repeatable parameters still take every value."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.core.query import _takes_many


def _refused(response: Any, name: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert {"field": name, "type": "repeated_parameter"}.items() <= body["details"][0].items()


@pytest.mark.parametrize(
    ("method", "query", "name"),
    [
        ("POST", "pseudonymize=%19x&pseudonymize=true", "pseudonymize"),  # an order's option
        ("GET", "flagged=false&flagged=false", "flagged"),  # the same value twice too
        ("POST", "format=csv&format=json", "format"),
    ],
)
def test_an_export_option_given_twice_orders_nothing(
    http: TestClient, headers: dict[str, str], method: str, query: str, name: str
) -> None:
    assert http.put("/v1/test/7", json={"title": "T"}, headers=headers).status_code == 201
    _refused(http.request(method, f"/v1/test/7/events?{query}", headers=headers), name)
    assert http.get("/v1/test/7/events/jobs", headers=headers).json()["jobs"] == []


def test_a_status_call_with_two_job_ids_is_refused(http: TestClient, headers: dict[str, str]) -> None:
    assert http.put("/v1/test/7", json={"title": "T"}, headers=headers).status_code == 201
    job_id = http.post("/v1/test/7/events", headers=headers).json()["jobId"]
    # The status call's fast path too: it must not answer for the last of the two.
    _refused(http.get(f"/v1/test/7/events?jobId=other&jobId={job_id}", headers=headers), "jobId")
    assert http.get(f"/v1/test/7/events?jobId={job_id}", headers=headers).status_code == 200


def test_other_calls_refuse_a_repeated_parameter(http: TestClient, headers: dict[str, str]) -> None:
    _refused(http.get("/v1/tests?limit=5&limit=6", headers=headers), "limit")
    assert http.get("/v1/tests?limit=5", headers=headers).status_code == 200


def test_repeatable_parameters_take_every_value(http: TestClient, headers: dict[str, str]) -> None:
    assert http.put("/v1/test/7", json={"title": "T"}, headers=headers).status_code == 201
    response = http.post("/v1/test/7/events?event=a&event=b&userId=1&userId=2", headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["options"]["event"] == ["a", "b"]


@pytest.mark.parametrize(
    ("annotation", "many"),
    [(int, False), (int | None, False), (list[int] | None, True), (list[str], True), (bool | None, False)],
)
def test_which_annotations_take_many(annotation: Any, many: bool) -> None:
    assert _takes_many(annotation) is many
