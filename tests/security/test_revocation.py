"""Revoking a client revokes its tokens within the documented bound (finding 2)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from examtrail.auth import service
from examtrail.auth.revocation import RevocationCache
from examtrail.core.db import transaction
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token


def test_revoked_clients_token_stops_reading_ingesting_and_exporting(
    http: TestClient, runtime: Runtime
) -> None:
    client_id, key = create_client(runtime, "uni-a")
    headers = bearer(get_token(http, client_id, key))
    assert http.put("/v1/test/7", json={"title": "T"}, headers=headers).status_code == 201
    assert http.get("/v1/test/7", headers=headers).status_code == 200

    with transaction(runtime.sessions) as session:
        assert service.revoke_client(session, client_id)
    bound = runtime.settings.revocation_check_seconds
    assert bound <= 5
    deadline = time.monotonic() + bound + 2  # the documented bound, plus a margin for a loaded machine
    while http.get("/v1/test/7", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revoked client's token still works"
        time.sleep(0.2)

    for method, path, body in (
        ("GET", "/v1/test/7", None),
        ("PUT", "/v1/test/7", {"title": "U"}),
        ("POST", "/v1/test/7/events", None),
        ("GET", "/v1/subscription", None),
    ):
        response = http.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == "token_revoked"
    # ...and its key gets no new token.
    assert (
        http.post(
            f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}",
            headers={"code": key},
        ).status_code
        == 401
    )


def test_other_clients_are_unaffected(http: TestClient, runtime: Runtime) -> None:
    revoked_id, revoked_key = create_client(runtime, "uni-a")
    kept_id, kept_key = create_client(runtime, "uni-a")
    kept = bearer(get_token(http, kept_id, kept_key))
    get_token(http, revoked_id, revoked_key)
    with transaction(runtime.sessions) as session:
        service.revoke_client(session, revoked_id)
    time.sleep(0.1)
    assert http.get("/v1/subscription", headers=kept).status_code == 200


def test_cache_answers_for_at_most_its_bound() -> None:
    cache = RevocationCache(5.0)
    cache.put("c", False, 100.0)
    assert cache.get("c", 104.9) is False
    assert cache.get("c", 105.0) is None
    assert cache.get("other", 100.0) is None
    assert RevocationCache(0).get("c", 100.0) is None


def test_cli_help_says_what_revocation_does() -> None:
    from examtrail.cli.main import app

    result = CliRunner().invoke(app, ["clients", "revoke", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "every token it already holds is refused" in text
    assert "EXAMTRAIL_REVOCATION_CHECK_SECONDS" in text
