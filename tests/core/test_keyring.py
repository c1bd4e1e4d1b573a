"""The secret keyring: settings, tokens, local links and sealed secrets across a rotation."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from examtrail.core import crypto
from examtrail.core.security import decode_token, issue_token
from examtrail.core.settings import Settings
from examtrail.storage import signing

A, B = b"key-A-0123456789abcdef0123456789abcdef", b"key-B-fedcba9876543210fedcba9876543210"


def test_the_keyring_comes_from_secret_keys_then_secret_key_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEYS", f" {B.decode()}, {A.decode()},{B.decode()} ")
    monkeypatch.setenv("EXAMTRAIL_SECRET_KEY", "ignored-when-a-list-is-set")
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.secret_keyring() == [B, A]  # newest first, each once
    assert settings.signing_key() == B
    monkeypatch.delenv("EXAMTRAIL_SECRET_KEYS")
    assert Settings(_env_file=None, data_dir=tmp_path).secret_keyring() == [b"ignored-when-a-list-is-set"]
    monkeypatch.delenv("EXAMTRAIL_SECRET_KEY")
    generated = Settings(_env_file=None, data_dir=tmp_path).secret_keyring()
    assert len(generated) == 1 and generated == Settings(_env_file=None, data_dir=tmp_path).secret_keyring()
    assert (tmp_path / "secret.key").read_text().strip().encode() == generated[0]
    assert Settings(_env_file=None, data_dir=tmp_path, secret_keys=[A.decode()]).secret_keyring() == [A]


def test_tokens_are_signed_with_the_newest_and_verified_with_any() -> None:
    token, _ = issue_token(A, tenant_id=1, client_id="c", scopes=frozenset({"export"}), ttl_seconds=60)
    assert jwt.get_unverified_header(token)["kid"] == crypto.key_id(A)
    assert decode_token([B, A], token).tenant_id == 1
    assert decode_token(A, token).client_id == "c"
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token([B], token)
    # Tokens from before key ids (no kid header) are tried against each key.
    legacy = jwt.encode({"sub": "c", "tid": 2, "exp": 4_000_000_000}, A, algorithm="HS256")
    assert decode_token([B, A], legacy).tenant_id == 2
    # A kid is only a hint: a lying one cannot make an unknown key valid.
    forged = jwt.encode(
        {"sub": "c", "tid": 2, "exp": 4_000_000_000},
        b"x" * 40,
        algorithm="HS256",
        headers={"kid": crypto.key_id(A)},
    )
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token([B, A], forged)
    # Expiry is reported as such, whichever key of the ring signed the token.
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_token([B, A], jwt.encode({"sub": "c", "tid": 1, "exp": 1}, A, algorithm="HS256"))


def test_local_links_verify_with_any_key_of_the_ring() -> None:
    url = signing.sign("http://x", A, "exports/1/f.json", 4_000_000_000, "f.json", "application/json")
    sig = url.split("sig=")[1].split("&")[0]
    args = ("exports/1/f.json", 4_000_000_000, "f.json", sig, "application/json")
    assert signing.verify([B, A], *args)
    assert signing.verify(A, *args)
    assert not signing.verify([B], *args)


def test_sealed_secrets_open_under_any_key_and_name_theirs() -> None:
    old = crypto.SecretBox(A)
    sealed = old.seal("whsec_x", "sub-1")
    assert sealed.startswith(f"v2.{crypto.key_id(A)}.")
    ring = crypto.SecretBox([B, A])
    assert ring.open(sealed, "sub-1") == "whsec_x"
    assert not ring.sealed_with_newest(sealed)
    resealed = ring.seal("whsec_x", "sub-1")
    assert ring.sealed_with_newest(resealed) and crypto.SecretBox(B).open(resealed, "sub-1") == "whsec_x"
    with pytest.raises(crypto.SecretUnavailableError):
        crypto.SecretBox(B).open(sealed, "sub-1")
    # Secrets sealed before key ids (v1) open under whichever key sealed them.
    import base64
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    raw = AESGCM(crypto._derive(A, crypto.WEBHOOK_SECRETS)).encrypt(nonce, b"whsec_old", b"sub-2")
    legacy = "v1." + base64.urlsafe_b64encode(nonce + raw).decode()
    assert ring.open(legacy, "sub-2") == "whsec_old"
    counts = crypto.Resealed()
    moved = counts.reseal(ring, legacy, "sub-2")
    assert moved is not None and ring.sealed_with_newest(moved)
    assert counts.reseal(ring, moved, "sub-2") is None
    assert counts.reseal(crypto.SecretBox(b"k" * 40), moved, "sub-2") is None
    assert (counts.moved, counts.current, counts.unreadable, counts.total) == (1, 1, 1, 3)
