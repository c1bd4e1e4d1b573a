"""The trailing-slash redirect answers a relative ``Location``: the request's ``Host`` is never
reflected in it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse

from examtrail.core.slashes import install_relative_slash_redirects, slash_redirect_location


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/v1/tests/", "/v1/tests"),
        ("/v1/tests/?limit=5&after=x%20y", "/v1/tests?limit=5&after=x%20y"),
        ("/v1/tests//", "/v1/tests"),
        ("/healthz/", "/healthz"),
    ],
)
def test_redirect_names_no_host(http: TestClient, path: str, location: str) -> None:
    response = http.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == location
    assert response.content == b""


def test_redirect_is_followed_and_keeps_the_method(http: TestClient, headers: dict[str, str]) -> None:
    assert http.get("/v1/tests/", headers=headers).status_code == 200
    response = http.post("/v1/subscription/", json={}, headers=headers, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/v1/subscription")


def test_a_path_without_a_twin_is_still_a_json_404(http: TestClient) -> None:
    response = http.get("/v1/nothing/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "location" not in response.headers


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/{name}")
    def named(name: str) -> PlainTextResponse:
        return PlainTextResponse(name)

    @app.get("/{path:path}.json")
    def document(path: str) -> PlainTextResponse:
        return PlainTextResponse(path)

    install_relative_slash_redirects(app)
    return app


def _scope(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", **extra}


@pytest.mark.parametrize(
    ("path", "location"),
    [
        # A leading ``//`` would be a network-path reference (another host): escaped.
        ("//evil.example.json/", "/%2Fevil.example.json"),
        # Browsers read ``\`` as ``/``: escaped too.
        ("/\\evil.example/", "/%5Cevil.example"),
        ("/a?b#c/", "/a%3Fb%23c"),
    ],
)
def test_location_is_never_a_reference_to_another_host(path: str, location: str) -> None:
    app = _app()
    assert slash_redirect_location(app.router, _scope(path, headers=[(b"host", b"evil.example")])) == location


def test_root_path_is_kept() -> None:
    app = _app()
    scope = _scope("/prefix/name/", root_path="/prefix", headers=[], query_string=b"q=1")
    assert slash_redirect_location(app.router, scope) == "/prefix/name?q=1"
