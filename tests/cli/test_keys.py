"""``examtrail keys rotate | list | reencrypt`` against the test database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from examtrail.audit.models import AuditEntry
from examtrail.auth.models import Tenant
from examtrail.cli.main import app
from examtrail.core import crypto
from examtrail.core.settings import Settings, get_settings
from examtrail.runtime import Runtime
from examtrail.signing import repository as signing_repository
from examtrail.webhooks import repository as webhooks_repository
from tests.cli.conftest import point_cli_at
from tests.signing.helpers import finished_export
from tests.support.api import create_client
from tests.support.receiver import Receiver
from tests.webhooks.helpers import subscribe

KEY_A = "cli-key-A-0123456789abcdef0123456789abcdef"
KEY_B = "cli-key-B-fedcba9876543210fedcba9876543210"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI sees the test's database (and secret keys, set per test)."""
    point_cli_at(settings, monkeypatch)
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEYS", KEY_A)
    yield
    get_settings.cache_clear()


def _keys(*args: str) -> Any:
    get_settings.cache_clear()  # the environment may have changed since the last command
    return CliRunner().invoke(app, ["keys", *args])


@pytest.mark.settings(secret_keys=[KEY_A])
def test_rotate_and_list(http: TestClient, headers: dict[str, str], runtime: Runtime, cli_env: None) -> None:
    before, _ = finished_export(http, headers)
    old_kid = jwt.get_unverified_header(before["signature"])["kid"]

    rotated = _keys("rotate")
    assert rotated.exit_code == 0, rotated.output
    assert f"retired (still published)  {old_kid}" in rotated.output
    with runtime.sessions() as session:
        current = signing_repository.current_key(session)
    assert current is not None and current.kid != old_kid
    assert f"current signing key  {current.kid}" in rotated.output

    listed = _keys("list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["kid"], r["current"]) for r in rows] == [(current.kid, True), (old_kid, False)]
    assert rows[1]["retired"] is not None
    assert all(r["sealedWithNewestSecret"] for r in rows)
    table = _keys("list")
    assert table.exit_code == 0 and current.kid in table.output and old_kid in table.output

    # The JWKS publishes both; the next export is signed with the new key.
    assert [k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]] == [current.kid, old_kid]
    after, _ = finished_export(http, headers, options={"format": "jsonl"})
    assert jwt.get_unverified_header(after["signature"])["kid"] == current.kid


@pytest.mark.settings(secret_keys=[KEY_A])
def test_reencrypt_moves_stored_secrets_to_the_newest_key(
    http: TestClient,
    headers: dict[str, str],
    runtime: Runtime,
    cli_env: None,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        subscribe(http, headers, receiver.url(f"/hook{n}"))
    kid_a, kid_b = crypto.key_id(KEY_A.encode()), crypto.key_id(KEY_B.encode())

    def sealed_kids() -> list[str]:
        with runtime.sessions() as session:
            sealed = [s for _, s in webhooks_repository.sealed_secrets(session)]
            sealed += [k.private_key_encrypted for k in signing_repository.all_keys(session)]
        return sorted({s.split(".")[1] for s in sealed})

    assert sealed_kids() == [kid_a]
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEYS", f"{KEY_B},{KEY_A}")
    listed = json.loads(_keys("list", "--json").output)
    assert [r["sealedWithNewestSecret"] for r in listed] == [False]

    result = _keys("reencrypt")
    assert result.exit_code == 0, result.output
    assert f"webhook secrets: 3 re-encrypted, 0 already under key {kid_b}, 0 unreadable" in result.output
    assert f"signing keys: 1 re-encrypted, 0 already under key {kid_b}, 0 unreadable" in result.output
    assert sealed_kids() == [kid_b]

    again = _keys("reencrypt")
    assert again.exit_code == 0
    assert "webhook secrets: 0 re-encrypted, 3 already under key" in again.output

    # A secret no configured key opens is reported (exit 1) and left as it was.
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEYS", "an-unrelated-key-0123456789abcdef0123")
    lost = _keys("reencrypt")
    assert lost.exit_code == 1
    assert "3 unreadable" in lost.output
    assert "open with none of the configured secret keys" in str(lost.exception)
    assert sealed_kids() == [kid_b]


def _entries(runtime: Runtime, action: str) -> list[tuple[int, str | None, str, str, str | None]]:
    with runtime.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        return [(r.tenant_id, r.client_id, r.object_type, r.object_id, r.details) for r in rows]


def _tenant_ids(runtime: Runtime) -> list[int]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


@pytest.mark.settings(secret_keys=[KEY_A])
def test_key_commands_write_an_entry_in_every_tenants_audit_log(
    http: TestClient,
    headers: dict[str, str],
    runtime: Runtime,
    cli_env: None,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_client(runtime, "uni-b")
    subscribe(http, headers, receiver.url("/hook"))
    tenants = _tenant_ids(runtime)
    assert len(tenants) == 2

    rotated = _keys("rotate")
    assert rotated.exit_code == 0, rotated.output
    with runtime.sessions() as session:
        current = signing_repository.current_key(session)
    assert current is not None
    entries = _entries(runtime, "signing_key.rotated")
    assert [e[:4] for e in entries] == [(t, "cli", "signing_key", current.kid) for t in tenants]
    assert all(json.loads(e[4] or "{}").keys() == {"retired"} for e in entries)

    # Re-sealing under a new secret key: one entry per tenant, naming the key by its public id.
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEYS", f"{KEY_B},{KEY_A}")
    assert _keys("reencrypt").exit_code == 0
    kid_b = crypto.key_id(KEY_B.encode())
    assert _entries(runtime, "secrets.resealed") == [(t, "cli", "secret_key", kid_b, None) for t in tenants]
    # Nothing left to move: no new entry.
    assert _keys("reencrypt").exit_code == 0
    assert len(_entries(runtime, "secrets.resealed")) == len(tenants)
    # Nothing in any entry is a secret.
    for entry in _entries(runtime, "signing_key.rotated") + _entries(runtime, "secrets.resealed"):
        assert KEY_A not in str(entry) and KEY_B not in str(entry)


@pytest.fixture
def receiver(tmp_path: Any) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver.log") as running:
        yield running
