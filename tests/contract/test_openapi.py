"""The OpenAPI document says exactly what the API does (checked on the document itself)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.openapi import OPERATION_IDS

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture
def document(http: TestClient) -> dict[str, Any]:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[Operation]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_2xx_has_its_real_schema(document: dict[str, Any]) -> None:
    untyped = []
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            first = next(iter(response.get("content", {}).values()), None)
            schema = first.get("schema", {}) if first else {}
            if path == "/files/{key}":
                continue  # the file itself
            if not schema or schema == {"type": "string"}:
                untyped.append(f"{method} {path} {status}")
    assert untyped == []


def test_every_error_is_the_error_model_with_its_codes(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert "ValidationError" not in components
    assert set(components["ErrorBody"]["required"]) == {"error", "message", "details"}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/readyz":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            assert "`error`:" in response["description"], (method, path, status)


def test_protected_operations_declare_security_with_scopes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == {"ingest", "export", "erase", "audit"}
    for _method, path, operation in operations(document):
        if not path.startswith("/v1/"):
            assert "security" not in operation
            continue
        if operation["operationId"] == "listTests":  # either scope reads the list
            assert {"oauth2": ["ingest"]} in operation["security"]
            assert {"oauth2": ["export"]} in operation["security"]
            assert {"oauth2": []} not in operation["security"]
        else:
            tags = operation["tags"]
            scope = "ingest" if "ingest" in tags else "audit" if "audit" in tags else "export"
            if "lifecycle" in tags:
                scope = "erase"
            assert {"oauth2": [scope]} in operation["security"], path
        assert {"401", "403"} <= set(operation["responses"])


def test_operation_ids_are_stable_and_readable(document: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _m, _p, operation in operations(document)}
    assert ids == set(OPERATION_IDS.values())
    by_route = {(m, p): op["operationId"] for m, p, op in operations(document)}
    assert by_route[("post", "/v1/test/{testId}/events")] == "orderTestEventsExport"
    assert by_route[("get", "/v1/test/{testId}/events/{jobId}")] == "getTestEventsExport"
    assert by_route[("delete", "/v1/test/{testId}/events/{jobId}")] == "cancelTestEventsExport"
    assert by_route[("put", "/v1/test/{testId}/candidates/{userId}/events/{eventId}/files/{fileName}")] == (
        "putEventFile"
    )


def test_parameters_are_described_and_timestamps_are_date_time(document: dict[str, Any]) -> None:
    undescribed = [
        f"{method} {path} {parameter['name']}"
        for method, path, operation in operations(document)
        for parameter in operation.get("parameters", [])
        if not parameter.get("description")
    ]
    assert undescribed == []
    job = document["components"]["schemas"]["ExportJobOut"]["properties"]
    assert job["created"]["format"] == "date-time"
    assert job["finished"]["anyOf"][0]["format"] == "date-time"
    status = document["components"]["schemas"]["JobStatus"]
    assert status["enum"] == ["queued", "running", "finished", "failed", "cancelled", "expired"]


def test_servers_come_from_the_public_url(http: TestClient, document: dict[str, Any]) -> None:
    public = http.app.state.runtime.settings.public_url.rstrip("/")  # type: ignore[attr-defined]
    assert document["servers"][0]["url"] == public


def test_docs_and_redoc_need_no_internet(http: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = http.get(page).text
        assert "cdn" not in html.lower()
        assert "/docs/assets/" in html
    assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert http.get("/docs/assets/redoc.standalone.js").status_code == 200
    assert "oauth2" in http.get("/docs/oauth2-redirect").text.lower()


def _schema_at(document: dict[str, Any], schema: dict[str, Any], pointer: str) -> dict[str, Any] | None:
    """The schema a JSON pointer into a response body names (through $refs and arrays)."""
    for part in pointer.strip("/").split("/"):
        while "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if part.isdigit():
            schema = schema.get("items", {})
        else:
            found = schema.get("properties", {}).get(part)
            if found is None:
                return None
            schema = found
    return schema


def test_links_lead_to_real_operations_with_every_path_parameter(document: dict[str, Any]) -> None:
    """Each link names an operation of the document and fills its path parameters (the ids), from
    the request's path parameters or from fields its answer really has."""
    by_id = {operation["operationId"]: operation for _, _, operation in operations(document)}
    seen = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                seen += 1
                where = (method, path, status, name)
                target = by_id[link["operationId"]]
                wanted = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                # All but what the client names itself (an attached file's name).
                assert set(link["parameters"]) <= wanted, where
                assert wanted - set(link["parameters"]) <= {"fileName"}, where
                own = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
                body = response["content"]["application/json"]["schema"]
                for expression in link["parameters"].values():
                    source, _, rest = expression.partition("#")
                    if source.startswith("$request.path."):
                        assert source.removeprefix("$request.path.") in own, (where, expression)
                    else:
                        assert source == "$response.body", (where, expression)
                        field = _schema_at(document, body, rest)
                        assert field is not None and field.get("type") in ("string", "integer"), (
                            where,
                            expression,
                        )
    assert seen >= 15


@pytest.mark.settings(max_request_bytes=1024)
def test_every_operation_with_a_body_documents_and_answers_413(
    http: TestClient, document: dict[str, Any], headers: dict[str, str]
) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        body = operation.get("requestBody")
        assert ("413" in responses) == (body is not None), (method, path)
        if body is None:
            continue
        if operation["operationId"] == "putEventFile":  # EXAMTRAIL_MAX_FILE_BYTES, not this limit
            assert "`payload_too_large`" not in responses["413"]["description"]
            assert "`file_too_large`" in responses["413"]["description"]
            continue
        assert "`payload_too_large`" in responses["413"]["description"], (method, path)
        content_type = next(iter(body["content"]))
        url = path.replace("{", "").replace("}", "")  # every path parameter: its own name (a 404 at most)
        for name in ("testId", "userId", "eventId", "jobId", "subscriptionId", "deliveryId"):
            url = url.replace(name, "1")
        response = http.request(
            method, url, content=b"x" * 2048, headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == 413, (method, path, response.status_code, response.text)
        assert response.json()["error"] == "payload_too_large"
