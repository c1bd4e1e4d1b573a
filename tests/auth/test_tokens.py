from __future__ import annotations

import base64
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from examtrail.auth import service
from examtrail.core.db import transaction
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client

TOKEN_PATH = "/api/authenticate/token/?grant_type=authorization_code&client_id={}"


@pytest.fixture
def credentials(runtime: Runtime) -> tuple[str, str]:
    return create_client(runtime, "uni-a")


def test_inspera_token_with_code_header(
    http: TestClient, credentials: tuple[str, str], runtime: Runtime
) -> None:
    client_id, key = credentials
    response = http.post(TOKEN_PATH.format(client_id), headers={"code": key})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == runtime.settings.token_ttl_seconds
    claims = jwt.decode(body["access_token"], runtime.settings.signing_key(), algorithms=["HS256"])
    assert claims["sub"] == client_id
    assert set(claims["scope"].split()) == {"ingest", "export"}
    assert claims["exp"] - claims["iat"] == runtime.settings.token_ttl_seconds


def test_inspera_token_with_code_in_query_or_form(http: TestClient, credentials: tuple[str, str]) -> None:
    client_id, key = credentials
    assert http.post(TOKEN_PATH.format(client_id) + f"&code={key}").status_code == 200
    assert http.post(TOKEN_PATH.format(client_id), data={"code": key}).status_code == 200


@pytest.mark.parametrize("variant", ["wrong-key", "unknown-client"])
def test_inspera_token_rejects_bad_credentials(
    http: TestClient, credentials: tuple[str, str], variant: str
) -> None:
    client_id, key = credentials
    if variant == "wrong-key":
        response = http.post(TOKEN_PATH.format(client_id), headers={"code": key + "x"})
    else:
        response = http.post(TOKEN_PATH.format("et_nope"), headers={"code": key})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


def test_inspera_token_requires_client_and_key(http: TestClient) -> None:
    response = http.post("/api/authenticate/token/?grant_type=authorization_code")
    # RFC 6749: no client authentication at all is invalid_client (401).
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = http.post("/api/authenticate/token/?grant_type=password&client_id=x", headers={"code": "y"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_oauth_client_credentials(http: TestClient, credentials: tuple[str, str]) -> None:
    client_id, key = credentials
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": key}
    response = http.post("/oauth/token", data=form)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    basic = base64.b64encode(f"{client_id}:{key}".encode()).decode()
    response = http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200
    response = http.post("/oauth/token", data={**form, "client_secret": "nope"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


def test_revoked_client_gets_no_token(
    http: TestClient, credentials: tuple[str, str], runtime: Runtime
) -> None:
    client_id, key = credentials
    with transaction(runtime.sessions) as session:
        assert service.revoke_client(session, client_id)
    assert http.post(TOKEN_PATH.format(client_id), headers={"code": key}).status_code == 401


def test_api_key_is_stored_hashed(credentials: tuple[str, str], runtime: Runtime) -> None:
    client_id, key = credentials
    with runtime.sessions() as session:
        from examtrail.auth.models import ApiClient

        stored = session.get(ApiClient, client_id)
        assert stored is not None
        assert key not in stored.key_hash
        assert len(stored.key_hash) == 64


def test_missing_invalid_and_expired_tokens_get_401(http: TestClient, runtime: Runtime) -> None:
    assert http.get("/v1/test/1").status_code == 401
    response = http.get("/v1/test/1", headers=bearer("garbage"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    expired = jwt.encode(
        {"sub": "et_x", "tid": 1, "scope": "ingest export", "exp": int(time.time()) - 5},
        runtime.settings.signing_key(),
        algorithm="HS256",
    )
    response = http.get("/v1/test/1", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["error"] == "token_expired"
    forged = jwt.encode(
        {"sub": "et_x", "tid": 1, "scope": "ingest", "exp": int(time.time()) + 60}, "other", "HS256"
    )
    assert http.get("/v1/test/1", headers=bearer(forged)).status_code == 401


def test_scopes_are_enforced(http: TestClient, runtime: Runtime) -> None:
    from tests.support.api import get_token

    ingest_only = bearer(get_token(http, *create_client(runtime, "uni-a", "ingest")))
    export_only = bearer(get_token(http, *create_client(runtime, "uni-a", "export")))
    assert http.put("/v1/test/7", json={"title": "t"}, headers=ingest_only).status_code == 201
    response = http.post("/v1/test/7/events", headers=ingest_only)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    # RFC 6750 section 3.1: the challenge names the error and the scope needed.
    assert response.headers["www-authenticate"] == (
        'Bearer realm="examtrail", error="insufficient_scope", scope="export"'
    )
    response = http.put("/v1/test/7", json={"title": "t"}, headers=export_only)
    assert response.status_code == 403
    assert 'error="insufficient_scope", scope="ingest"' in response.headers["www-authenticate"]
    assert http.post("/v1/test/7/events", headers=export_only).status_code == 202
