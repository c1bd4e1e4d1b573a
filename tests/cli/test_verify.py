"""``examtrail verify``: a real export downloaded through the API, checked offline against a
saved JWKS and online against the server's; tampered files and signatures fail (exit 1)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from examtrail.cli.main import app
from examtrail.core.settings import Settings, get_settings
from tests.signing.helpers import finished_export
from tests.support.processes import ExamtrailProcess


@dataclass
class Signed:
    file: Path
    signature: str
    jwks: Path
    status: dict[str, Any]


@pytest.fixture
def signed(http: TestClient, headers: dict[str, str], tmp_path: Path) -> Signed:
    status, content = finished_export(http, headers, options={"format": "csv"})
    file = tmp_path / "export.csv"
    file.write_bytes(content)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(http.get("/.well-known/jwks.json").text)
    return Signed(file, status["signature"], jwks, status)


@pytest.fixture
def clean_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _verify(*args: str) -> Any:
    return CliRunner().invoke(app, ["verify", *args])


def test_verify_offline_with_a_jwks_file(signed: Signed) -> None:
    result = _verify(str(signed.file), "--signature", signed.signature, "--jwks", str(signed.jwks))
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    for expected in (
        "algorithm 'EdDSA' is EdDSA",
        "the signature is valid",
        f"file size {signed.status['fileSize']} = signed fileSize {signed.status['fileSize']}",
        f"file SHA-256 {signed.status['sha256']} = signed sha256",
        signed.status["jobId"],
        "verified",
    ):
        assert expected in result.output


def test_verify_reads_the_signature_from_a_file(signed: Signed, tmp_path: Path) -> None:
    (tmp_path / "sig.jws").write_text(signed.signature + "\n")
    result = _verify(str(signed.file), "--signature", f"@{tmp_path / 'sig.jws'}", "--jwks", str(signed.jwks))
    assert result.exit_code == 0, result.output


def test_a_flipped_byte_fails(signed: Signed) -> None:
    content = bytearray(signed.file.read_bytes())
    content[len(content) // 2] ^= 0x01
    signed.file.write_bytes(bytes(content))
    result = _verify(str(signed.file), "--signature", signed.signature, "--jwks", str(signed.jwks))
    assert result.exit_code == 1
    assert "FAIL file SHA-256" in result.output
    assert "verified:" not in result.output


def test_a_truncated_file_fails(signed: Signed) -> None:
    signed.file.write_bytes(signed.file.read_bytes()[:-1])
    result = _verify(str(signed.file), "--signature", signed.signature, "--jwks", str(signed.jwks))
    assert result.exit_code == 1
    assert "FAIL file size" in result.output


def test_a_changed_payload_fails(signed: Signed) -> None:
    header, payload, sig = signed.signature.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["fileSize"] += 1
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    result = _verify(str(signed.file), "--signature", f"{header}.{edited}.{sig}", "--jwks", str(signed.jwks))
    assert result.exit_code == 1
    assert "FAIL the signature is valid" in result.output


def test_a_key_missing_from_the_set_fails(signed: Signed, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"keys": []}))
    result = _verify(str(signed.file), "--signature", signed.signature, "--jwks", str(other))
    assert result.exit_code == 1
    assert "FAIL key" in result.output


def test_not_a_jws_or_not_a_jwks_is_one_error_line(signed: Signed, tmp_path: Path) -> None:
    result = _verify(str(signed.file), "--signature", "not-a-jws", "--jwks", str(signed.jwks))
    assert result.exit_code != 0
    assert "not a compact JWS" in str(result.exception)
    (tmp_path / "bad.json").write_text("[1, 2]")
    result = _verify(str(signed.file), "--signature", signed.signature, "--jwks", str(tmp_path / "bad.json"))
    assert result.exit_code != 0
    assert "is not a JWKS" in str(result.exception)


def test_verify_fetches_the_jwks_from_the_public_url(
    signed: Signed,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_settings: None,
) -> None:
    # A real server on the same database publishes the same keys.
    env = {
        "EXAMTRAIL_DATABASE_URL": settings.resolved_database_url,
        "EXAMTRAIL_DATA_DIR": str(tmp_path / "server"),
        "EXAMTRAIL_SECRET_KEY": settings.signing_key().decode(),
    }
    with ExamtrailProcess.server(env, tmp_path / "logs") as server:
        monkeypatch.setenv("EXAMTRAIL_PUBLIC_URL", server.base_url)
        get_settings.cache_clear()
        result = _verify(str(signed.file), "--signature", signed.signature)
    assert result.exit_code == 0, result.output
    assert f"{server.base_url}/.well-known/jwks.json" in result.output
    assert "verified" in result.output
