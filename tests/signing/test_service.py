"""Signing keys: created once (also under a race), sealed, rotated; the JWKS endpoint."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from examtrail.core import crypto
from examtrail.core.db import transaction
from examtrail.runtime import Runtime
from examtrail.signing import repository, service
from examtrail.signing.models import SigningKey


def _count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(SigningKey)) or 0)


def test_the_app_creates_the_key_on_first_start_and_publishes_it(http: TestClient, runtime: Runtime) -> None:
    assert _count(runtime) == 1
    response = http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "public" in response.headers["cache-control"]
    [jwk] = response.json()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    # The kid is the RFC 7638 thumbprint of the key.
    assert jwk["kid"] == service.thumbprint(jwk["x"])
    assert http.get("/.well-known/jwks.json").json() == response.json()


def test_concurrent_first_use_creates_one_key(runtime: Runtime) -> None:
    assert _count(runtime) == 0
    barrier = threading.Barrier(6)
    kids: list[str] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            barrier.wait()
            kids.append(service.current_key(runtime.sessions, runtime.settings).kid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(kids)) == 1
    assert _count(runtime) == 1


def test_the_private_key_is_stored_sealed(runtime: Runtime) -> None:
    key = service.current_key(runtime.sessions, runtime.settings)
    assert key.private_key_encrypted.startswith(f"v2.{crypto.key_id(runtime.settings.signing_key())}.")
    signer = service.signer(runtime.sessions, runtime.settings)
    # Bound to its kid: moved to another row it does not open.
    with pytest.raises(crypto.SecretUnavailableError):
        service.key_box(runtime.settings).open(key.private_key_encrypted, "another-kid")
    assert signer.kid == key.kid


def test_rotate_retires_the_current_key_and_keeps_it(runtime: Runtime) -> None:
    first = service.current_key(runtime.sessions, runtime.settings)
    with transaction(runtime.sessions) as session:
        second, retired = service.rotate(session, runtime.settings)
    assert retired == [first.kid]
    assert service.current_key(runtime.sessions, runtime.settings).kid == second.kid
    with runtime.sessions() as session:
        keys = {k.kid: k for k in repository.all_keys(session)}
        assert keys[first.kid].current is None and keys[first.kid].retired_at is not None
        assert keys[second.kid].current is True and keys[second.kid].retired_at is None
        assert [k.kid for k in service.jwks(session).keys] == [second.kid, first.kid]
