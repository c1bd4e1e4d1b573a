"""GET /v1/tests: the tenant's tests with their counts, keyset-paginated and searchable."""

from __future__ import annotations

from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token, seed_test


def test_lists_own_tests_with_counts(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=7, candidates=2, events_per_candidate=3)
    http.put("/v1/test/3", json={"title": "Chemistry mock"}, headers=headers)
    http.put("/v1/test/5", json={"title": "Not yours"}, headers=other_headers)
    flag = {
        "eventId": "f-1",
        "event": "flag",
        "timeStamp": "2026-06-01T11:00:00Z",
        "userId": 9,
        "flaggingInfo": {"flagType": "noise", "severityLevel": "low"},
    }
    assert http.post("/v1/test/7/candidates/100/events", json=flag, headers=headers).status_code == 201

    response = http.get("/v1/tests", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["nextAfter"] is None
    assert [t["testId"] for t in body["tests"]] == [3, 7]
    chemistry, seven = body["tests"]
    assert (chemistry["candidates"], chemistry["events"], chemistry["flags"], chemistry["lastEvent"]) == (
        0,
        0,
        0,
        None,
    )
    assert (seven["candidates"], seven["events"], seven["flags"]) == (2, 7, 1)
    assert seven["lastEvent"] == "2026-06-01T11:00:00.000Z"
    assert [t["testId"] for t in http.get("/v1/tests", headers=other_headers).json()["tests"]] == [5]


def test_keyset_pages_and_search(http: TestClient, headers: dict[str, str]) -> None:
    for test_id in range(1, 8):
        title = "Physics 100%" if test_id == 4 else f"Exam {test_id}"
        http.put(f"/v1/test/{test_id}", json={"title": title}, headers=headers)
    seen, after = [], None
    while True:
        params = {"limit": 3, **({"after": after} if after is not None else {})}
        page = http.get("/v1/tests", params=params, headers=headers).json()
        seen.append([t["testId"] for t in page["tests"]])
        after = page["nextAfter"]
        if after is None:
            break
    assert seen == [[1, 2, 3], [4, 5, 6], [7]]
    search = http.get("/v1/tests", params={"q": "physics"}, headers=headers).json()
    assert [t["testId"] for t in search["tests"]] == [4]
    # LIKE wildcards are plain characters; a number also finds the test with that id.
    assert [
        t["testId"] for t in http.get("/v1/tests", params={"q": "0%"}, headers=headers).json()["tests"]
    ] == [4]
    assert [
        t["testId"] for t in http.get("/v1/tests", params={"q": "6"}, headers=headers).json()["tests"]
    ] == [6]
    assert http.get("/v1/tests", params={"limit": 0}, headers=headers).status_code == 422


def test_needs_a_token_and_either_scope(http: TestClient, runtime: Runtime) -> None:
    assert http.get("/v1/tests").status_code == 401
    export_only = bearer(get_token(http, *create_client(runtime, "uni-x", scopes="export")))
    assert http.get("/v1/tests", headers=export_only).status_code == 200


def test_documented_in_openapi(http: TestClient) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/v1/tests"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"after", "limit", "q"}
    assert "keyset" in operation["summary"]


def test_search_ignores_the_case_of_every_letter_on_both_databases(
    http: TestClient, headers: dict[str, str]
) -> None:
    # SQLite's own lower() folds ASCII only: "økonomi" missed "ØKONOMI" there, not on PostgreSQL.
    http.put("/v1/test/7", json={"title": "ØKONOMI Eksamen"}, headers=headers)
    http.put("/v1/test/8", json={"title": "prøve i ærlighet"}, headers=headers)

    def found(query: str) -> list[int]:
        page = http.get("/v1/tests", params={"q": query}, headers=headers).json()
        return [t["testId"] for t in page["tests"]]

    for query in ("økonomi", "ØKONOMI", "Økonomi", "eksamen", "EKSAMEN"):
        assert found(query) == [7], query
    for query in ("PRØVE", "Ærlighet", "I ÆR"):
        assert found(query) == [8], query
    assert found("økonomi eksamen") == [7]
    assert found("okonomi") == []  # folded, never transliterated


def test_search_folds_alike_on_both_databases_when_python_folds_otherwise(
    http: TestClient, headers: dict[str, str]
) -> None:
    # Python lowers a final capital sigma to "ς" and "İ" to "i" + a combining dot; PostgreSQL's
    # lower() does not: a search lowered in Python found this title on SQLite only.
    assert http.put("/v1/test/7", json={"title": "ΣΑΣ İSTANBUL"}, headers=headers).status_code == 201
    http.put("/v1/test/8", json={"title": "a_b/c"}, headers=headers)

    def found(query: str) -> list[int]:
        response = http.get("/v1/tests", params={"q": query}, headers=headers)
        assert response.status_code == 200, response.text
        return [t["testId"] for t in response.json()["tests"]]

    for query in ("ΣΑΣ", "İSTANBUL", "ΣΑΣ İSTANBUL", "STANBUL"):
        assert found(query) == [7], query
    assert found("_") == [8]  # wildcards and the escape character stay plain characters
    assert found("/") == [8]
    assert found("b/c") == [8]
    assert found("a%") == []


def test_a_number_past_int64_is_searched_as_text_not_a_500(http: TestClient, headers: dict[str, str]) -> None:
    big = 2**63 - 1
    assert http.put(f"/v1/test/{big}", json={"title": "Largest"}, headers=headers).status_code == 201
    http.put("/v1/test/42", json={"title": "Exam 9223372036854775808"}, headers=headers)

    def found(query: str) -> list[int]:
        response = http.get("/v1/tests", params={"q": query}, headers=headers)
        assert response.status_code == 200, response.text
        return [t["testId"] for t in response.json()["tests"]]

    assert found(str(big + 1)) == [42]  # 19 digits over int64: only the title matches
    assert found("9" * 19) == []
    assert found("9" * 200) == []
    assert found(str(big)) == [big]
    # Leading zeros: the id the digits denote, however many there are.
    assert found("0" * 30 + str(big)) == [big]
    assert found("0" * 30 + "42") == [42]
    ui = http.get("/ui/fragments/tests", params={"q": "9" * 19}, headers=headers)
    assert ui.status_code == 200
