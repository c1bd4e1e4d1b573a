"""Rotating the service's secret key without downtime.

Under key A a client holds a token, a local download link and a webhook subscription
(its secret sealed under A). The service restarts with ``EXAMTRAIL_SECRET_KEYS=B,A``:
all three keep working while new material is made with B; ``keys reencrypt`` moves the
stored secrets to B; after A is dropped the subscription (and the export signing key)
still work, and only what was signed with A (the old token and link) is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from examtrail.app import create_app
from examtrail.core import crypto
from examtrail.core.db import transaction
from examtrail.core.settings import Settings
from examtrail.runtime import Runtime
from examtrail.signing import repository as signing_repository
from examtrail.signing import service as signing
from examtrail.storage.local import LocalObjectStore
from examtrail.tasks import background_worker, build_runtime
from examtrail.webhooks import repository as webhooks_repository
from examtrail.webhooks import service as webhooks
from tests.support.api import bearer, create_client, fetch, get_token
from tests.support.receiver import Receiver
from tests.webhooks.helpers import export, subscribe, verify

KEY_A = "key-A-0123456789abcdef0123456789abcdef"
KEY_B = "key-B-fedcba9876543210fedcba9876543210"


@contextmanager
def serving(settings: Settings, keys: list[str]) -> Iterator[tuple[TestClient, Runtime]]:
    """The service (API and worker) restarted on the same database with ``keys``."""
    restarted = Settings(**{**settings.model_dump(), "_env_file": None, "secret_keys": keys})
    runtime = build_runtime(restarted)
    runtime.store.ensure_ready()
    worker = None if runtime.embedded_worker else background_worker(runtime)
    if worker is not None:
        worker.start()
    try:
        with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
            yield client, runtime
    finally:
        if worker is not None:
            worker.stop()
            runtime.broker.flush_all()
        runtime.close()


def _sealed_with(runtime: Runtime) -> set[str]:
    """The key ids that the stored secrets (subscriptions, signing keys) name."""
    with runtime.sessions() as session:
        sealed = [s for _, s in webhooks_repository.sealed_secrets(session)]
        sealed += [k.private_key_encrypted for k in signing_repository.all_keys(session)]
    return {s.split(".")[1] for s in sealed}


def _notified(receiver: Receiver, count: int, secret: str) -> dict[str, Any]:
    found = receiver.wait_for(lambda notes: len(notes) >= count, what=f"notification {count}")
    return verify(found[count - 1], secret)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver.log") as running:
        yield running


@pytest.mark.settings(secret_keys=[KEY_A])
def test_rotate_the_secret_key_while_tokens_links_and_subscriptions_are_live(
    settings: Settings, receiver: Receiver
) -> None:
    kid_a, kid_b = crypto.key_id(KEY_A.encode()), crypto.key_id(KEY_B.encode())

    # --- key A only: a token, a subscription, an export with its download link.
    with serving(settings, [KEY_A]) as (http, runtime):
        client_id, api_key = create_client(runtime, "uni-a")
        token_a = get_token(http, client_id, api_key)
        headers_a = bearer(token_a)
        assert jwt.get_unverified_header(token_a)["kid"] == kid_a
        sub = subscribe(http, headers_a, receiver.url())
        first = export(http, headers_a, test_id=42)
        assert first["status"] == "finished"
        assert _notified(receiver, 1, sub["secret"])["jobId"] == first["jobId"]
        link_a = first["downloadUrl"]
        local_a = _local_store(runtime.settings.secret_keyring()).presigned_get_url("x", expires_at=_hour())
        assert _sealed_with(runtime) == {kid_a}

    # --- B,A: everything made with A still works; new material is made with B.
    with serving(settings, [KEY_B, KEY_A]) as (http, runtime):
        assert http.get("/v1/tests", headers=headers_a).status_code == 200
        if settings.storage == "local":
            assert fetch(http, link_a).status_code == 200
        assert _link_valid(runtime, local_a)
        token_b = get_token(http, client_id, api_key)
        assert jwt.get_unverified_header(token_b)["kid"] == kid_b
        headers_b = bearer(token_b)
        second = export(http, headers_b, test_id=43)
        assert second["status"] == "finished"
        # The subscription's secret (sealed under A) still signs the notification.
        assert _notified(receiver, 2, sub["secret"])["jobId"] == second["jobId"]
        # New links are signed with B: they verify under B alone.
        local_b = runtime.store.presigned_get_url("exports/x", expires_at=_hour())
        if settings.storage == "local":
            assert LocalObjectStore(
                settings.data_dir / "objects", "http://testserver", KEY_B.encode()
            ).verify_signature(*_link_parts(local_b))
        assert _sealed_with(runtime) == {kid_a}

        # keys reencrypt: every stored secret moves to B (a second pass moves nothing).
        with transaction(runtime.sessions) as session:
            moved_secrets = webhooks.reencrypt_secrets(session, runtime.settings)
            moved_keys = signing.reencrypt_keys(session, runtime.settings)
        assert (moved_secrets.moved, moved_secrets.unreadable) == (1, 0)
        assert (moved_keys.moved, moved_keys.unreadable) == (1, 0)
        assert _sealed_with(runtime) == {kid_b}
        with transaction(runtime.sessions) as session:
            assert webhooks.reencrypt_secrets(session, runtime.settings).current == 1
        # ...and the token and links made with A work until their own expiry.
        assert http.get("/v1/tests", headers=headers_a).status_code == 200
        assert _link_valid(runtime, local_a)

    # --- A dropped: stored secrets open under B; only what A signed is refused.
    with serving(settings, [KEY_B]) as (http, runtime):
        assert http.get("/v1/tests", headers=headers_b).status_code == 200
        assert http.get("/v1/tests", headers=headers_a).status_code == 401
        assert not _link_valid(runtime, local_a)
        third = export(http, headers_b, test_id=44)
        assert third["status"] == "finished", third
        assert _notified(receiver, 3, sub["secret"])["jobId"] == third["jobId"]
        # One export signing key all along: signatures made before the rotation verify.
        jwks = http.get("/.well-known/jwks.json").json()
        for job in (first, second, third):
            kid = jwt.get_unverified_header(job["signature"])["kid"]
            claims = jwt.decode(job["signature"], jwt.PyJWKSet.from_dict(jwks)[kid], algorithms=["EdDSA"])
            assert claims["jobId"] == job["jobId"]


@pytest.mark.settings(secret_keys=[KEY_A])
def test_dropping_a_key_before_reencrypt_fails_exports_cleanly(settings: Settings) -> None:
    with serving(settings, [KEY_A]) as (http, runtime):
        headers = bearer(get_token(http, *create_client(runtime, "uni-a")))
        assert export(http, headers, test_id=42)["status"] == "finished"
    with serving(settings, [KEY_B]) as (http, runtime):
        headers = bearer(get_token(http, *create_client(runtime, "uni-b")))
        failed = export(http, headers, test_id=42)
        # Never an unsigned file: the job fails with a code the operator can act on.
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "signing_unavailable"
        assert failed["signature"] is None and failed["downloadUrl"] is None


def _hour() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(hours=1)


def _link_parts(url: str) -> tuple[str, int, str, str, str]:
    import httpx

    parsed = httpx.URL(url)
    key = parsed.path.removeprefix("/files/")
    params = parsed.params
    return key, int(params["expires"]), params.get("filename", ""), params["sig"], params.get("type", "")


def _local_store(keys: list[bytes]) -> LocalObjectStore:
    """A local store's links with ``keys`` (whatever store the deployment under test uses)."""
    return LocalObjectStore(Path("/nonexistent"), "http://testserver", keys)


def _link_valid(runtime: Runtime, url: str) -> bool:
    return _local_store(runtime.settings.secret_keyring()).verify_signature(*_link_parts(url))
