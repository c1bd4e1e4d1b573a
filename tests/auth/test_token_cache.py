"""Verified access tokens are remembered per process (``core.security.TokenCache``): each token is
verified once, yet an expired, tampered, re-keyed or revoked one is refused as before."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from examtrail.auth import service
from examtrail.core import security
from examtrail.core.db import transaction
from examtrail.core.security import TokenCache, issue_token
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token

KEY = b"k" * 48
OTHER_KEY = b"o" * 48


def _token(key: bytes = KEY, ttl: int = 600) -> str:
    token, _ = issue_token(key, tenant_id=3, client_id="et_x", scopes=frozenset({"export"}), ttl_seconds=ttl)
    return token


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = security.decode_token

    def counting(keys: bytes | list[bytes], token: str) -> security.Principal:
        seen.append(token)
        return real(keys, token)

    monkeypatch.setattr(security, "decode_token", counting)
    return seen


def test_a_token_is_verified_once_and_answered_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = _count_decodes(monkeypatch)
    cache, token = TokenCache(), _token()
    first = cache.decode([KEY], token)
    assert cache.decode([KEY], token) == first
    assert first.tenant_id == 3 and first.client_id == "et_x" and first.scopes == {"export"}
    assert decodes == [token]


def test_a_cached_token_is_refused_from_its_expiry_on() -> None:
    cache, token = TokenCache(), _token(ttl=1)
    expires = cache.decode([KEY], token).expires_at.timestamp()
    assert cache.decode([KEY], token).client_id == "et_x"  # cached, not yet expired
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    for _ in range(2):  # refused, and not put back
        with pytest.raises(jwt.ExpiredSignatureError):
            cache.decode([KEY], token)


def test_tampered_tokens_are_refused_every_time_even_beside_a_cached_one() -> None:
    cache, token = TokenCache(), _token()
    cache.decode([KEY], token)
    header, payload, signature = token.split(".")
    tampered_signature = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    forged = _token(key=OTHER_KEY)
    for bad in (tampered_signature, forged, tampered_signature):
        with pytest.raises(jwt.InvalidTokenError):
            cache.decode([KEY], bad)
    assert cache.decode([KEY], token).client_id == "et_x"


def test_a_key_removed_from_the_keyring_takes_its_cached_tokens_with_it() -> None:
    cache, token = TokenCache(), _token()
    cache.decode([KEY], token)
    assert cache.decode([OTHER_KEY, KEY], token).client_id == "et_x"  # rotated: still in the ring
    with pytest.raises(jwt.InvalidSignatureError):
        cache.decode([OTHER_KEY], token)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = _count_decodes(monkeypatch)
    cache = TokenCache(size=2)
    tokens = [_token(ttl=600 + n) for n in range(3)]
    for token in tokens:
        cache.decode([KEY], token)
    cache.decode([KEY], tokens[0])  # emptied when full: verified again
    assert decodes == [*tokens, tokens[0]]


@pytest.mark.settings(revocation_check_seconds=0)
def test_revocation_is_honoured_on_a_cached_token(http: TestClient, runtime: Runtime) -> None:
    client_id, key = create_client(runtime, "uni-a")
    headers = bearer(get_token(http, client_id, key))
    url = "/v1/test/61/events?jobId=unknown"
    for _ in range(2):  # the second call answers from the cache
        assert http.get(url, headers=headers).status_code == 404
    with transaction(runtime.sessions) as session:
        assert service.revoke_client(session, client_id)
    for path in (url, "/v1/test/61/events/unknown", "/v1/test/61"):
        response = http.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "token_revoked"
