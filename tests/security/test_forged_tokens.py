"""Forged tokens: every variant answers 401 JSON, never 200 or 500 (finding 5 and the probe set)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.fixture
def claims(http: TestClient, runtime: Runtime) -> dict[str, Any]:
    client_id, key = create_client(runtime, "uni-a")
    token = get_token(http, client_id, key)
    decoded: dict[str, Any] = jwt.decode(token, runtime.settings.signing_key(), algorithms=["HS256"])
    return decoded


def _signed(runtime: Runtime, claims: dict[str, Any], **changes: Any) -> str:
    edited = {**claims, **changes}
    for name, value in changes.items():
        if value is None:
            edited.pop(name)
    return jwt.encode(edited, runtime.settings.signing_key(), algorithm="HS256")


OUT_OF_RANGE: list[dict[str, Any]] = [
    {"exp": 2**40},
    {"exp": 2**63},
    {"exp": 10**30},
    {"exp": -1},
    {"exp": "tomorrow"},
    {"exp": True},
    {"tid": "1"},
    {"tid": 1.5},
    {"tid": 2**40},
    {"tid": 2**70},
    {"tid": -1},
    {"tid": 0},
    {"tid": None},
    {"tid": True},
    {"tid": [1]},
    {"sub": 12},
    {"sub": ""},
    {"sub": "x" * 500},
    {"sub": None},
    {"sub": "\u0000"},
    {"sub": "et_\u0000"},
    {"sub": "et_\u001f"},
    {"scope": ["export"]},
    {"scope": 7},
    {"iat": 2**70},
    {"iat": "now"},
    {"nbf": 2**62},
]


@pytest.mark.parametrize("changes", OUT_OF_RANGE, ids=lambda c: json.dumps(c)[:40])
def test_signed_tokens_with_out_of_range_claims_are_401(
    http: TestClient, runtime: Runtime, claims: dict[str, Any], changes: dict[str, Any]
) -> None:
    token = _signed(runtime, claims, **changes)
    for path in ("/v1/test/1", "/v1/subscription", "/v1/test/1/events?jobId=x"):
        response = http.get(path, headers=bearer(token))
        assert response.status_code == 401, (path, response.status_code, response.text)
        assert response.json()["error"] in ("invalid_token", "token_expired")


def test_forged_and_tampered_tokens_are_401(
    http: TestClient, runtime: Runtime, claims: dict[str, Any]
) -> None:
    good = _signed(runtime, claims)
    assert http.get("/v1/subscription", headers=bearer(good)).status_code == 200
    header, payload, signature = good.split(".")
    other_tenant = {**claims, "tid": claims["tid"] + 1}
    forged = [
        # alg none, in its spellings, with and without a signature part
        _unsigned({"alg": "none", "typ": "JWT"}, claims),
        _unsigned({"alg": "None", "typ": "JWT"}, claims),
        _unsigned({"alg": "NONE"}, claims),
        _unsigned({"alg": "nOnE"}, claims, signature),
        _unsigned({"alg": "none"}, claims).rstrip("."),
        # another algorithm with the same key, and the wrong key
        jwt.encode(claims, runtime.settings.signing_key(), algorithm="HS512"),
        jwt.encode(claims, runtime.settings.signing_key(), algorithm="HS384"),
        jwt.encode(claims, b"not-the-key-0123456789abcdef0123456789", algorithm="HS256"),
        # edited claims under the old signature
        f"{header}.{_b64(json.dumps(other_tenant).encode())}.{signature}",
        f"{header}.{_b64(json.dumps({**claims, 'scope': 'ingest export admin'}).encode())}.{signature}",
        f"{header}.{_b64(json.dumps({**claims, 'exp': claims['exp'] + 86400}).encode())}.{signature}",
        # broken shapes
        f"{header}.{payload}",
        f"{header}.{payload}.",
        f"{header}.{payload}.{signature[:-2]}",
        "....",
        "a.b.c",
        "e30.e30.",
        "x" * 10_000,
        # expired
        _signed(runtime, claims, exp=int(time.time()) - 10, iat=int(time.time()) - 100),
    ]
    for token in forged:
        response = http.get("/v1/subscription", headers=bearer(token))
        assert response.status_code == 401, (token[:80], response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        # RFC 6750: a token was sent and is bad.
        assert 'error="invalid_token"' in response.headers.get("www-authenticate", "")


def test_signed_token_of_an_unknown_client_is_401(
    http: TestClient, runtime: Runtime, claims: dict[str, Any]
) -> None:
    token = _signed(runtime, claims, sub="et_doesnotexist00")
    response = http.get("/v1/subscription", headers=bearer(token))
    assert response.status_code == 401
