"""Signed exports end to end: a real finished export, downloaded through the API, verified
with PyJWT alone against the published JWKS; tampering and key rotation."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from examtrail.core.db import transaction
from examtrail.runtime import Runtime
from examtrail.signing import service
from tests.signing.helpers import finished_export, tenant_id
from tests.support.api import seed_test


def _jwks(http: TestClient) -> dict[str, Any]:
    response = http.get("/.well-known/jwks.json")  # public: no token
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _verify_with_pyjwt(jwks: dict[str, Any], signature: str) -> dict[str, Any]:
    """What the README tells users to do: nothing but PyJWT."""
    kid = jwt.get_unverified_header(signature)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, Any] = jwt.decode(signature, key, algorithms=["EdDSA"])
    return claims


def _edit_payload(signature: str, **changes: Any) -> str:
    """The same JWS with payload fields changed (and the original signature kept)."""
    header, payload, sig = signature.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{sig}"


def test_a_finished_export_verifies_with_pyjwt_alone(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    status, content = finished_export(http, headers, options={"format": "jsonl", "userId": 100})
    signature = status["signature"]
    header = jwt.get_unverified_header(signature)
    assert header["alg"] == "EdDSA"

    claims = _verify_with_pyjwt(_jwks(http), signature)
    assert claims == {
        "jobId": status["jobId"],
        "testId": 42,
        "tenant": tenant_id(runtime),
        "created": status["created"],
        "options": status["options"],
        "fileSize": status["fileSize"],
        "sha256": status["sha256"],
    }
    assert claims["options"]["format"] == "jsonl"
    # ...and the payload describes the bytes actually downloaded.
    assert len(content) == claims["fileSize"]
    assert hashlib.sha256(content).hexdigest() == claims["sha256"]

    # The same key through jwt.PyJWKClient, as a verifier on the network would fetch it.
    jwk = next(k for k in _jwks(http)["keys"] if k["kid"] == header["kid"])
    assert jwt.decode(signature, jwt.PyJWK(jwk), algorithms=["EdDSA"]) == claims


def test_the_status_and_the_job_list_carry_the_same_signature(
    http: TestClient, headers: dict[str, str]
) -> None:
    status, _ = finished_export(http, headers)
    listed = http.get("/v1/test/42/events/jobs", headers=headers).json()["jobs"]
    assert [job["signature"] for job in listed] == [status["signature"]]
    by_path = http.get(f"/v1/test/42/events/{status['jobId']}", headers=headers).json()
    assert by_path["signature"] == status["signature"]


def test_unfinished_jobs_have_no_signature(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:

    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    ordered = http.post("/v1/test/9/events", headers=headers).json()
    cancelled = http.delete(f"/v1/test/9/events/{ordered['jobId']}", headers=headers)
    if cancelled.status_code == 200:
        assert cancelled.json()["signature"] is None
    status = http.get(f"/v1/test/9/events/{ordered['jobId']}", headers=headers).json()
    assert (status["signature"] is None) == (status["status"] != "finished")


@pytest.mark.parametrize(
    "change",
    [
        {"fileSize": 1},
        {"sha256": "0" * 64},
        {"jobId": "00000000-0000-0000-0000-000000000000"},
        {"tenant": 999},
        {"testId": 43},
        {"created": "2020-01-01T00:00:00.000Z"},
        {"options": {"format": "csv"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_changed_status_field_fails_verification(
    http: TestClient, headers: dict[str, str], change: dict[str, Any]
) -> None:
    status, _ = finished_export(http, headers)
    jwks = _jwks(http)
    with pytest.raises(jwt.InvalidSignatureError):
        _verify_with_pyjwt(jwks, _edit_payload(status["signature"], **change))


def test_a_flipped_byte_in_the_file_fails_verification(http: TestClient, headers: dict[str, str]) -> None:
    status, content = finished_export(http, headers)
    claims = _verify_with_pyjwt(_jwks(http), status["signature"])
    for index in (0, len(content) // 2, len(content) - 1):
        flipped = bytearray(content)
        flipped[index] ^= 0x01
        assert len(flipped) == claims["fileSize"]
        assert hashlib.sha256(flipped).hexdigest() != claims["sha256"]


def test_a_signature_from_another_key_fails(http: TestClient, headers: dict[str, str]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    status, _ = finished_export(http, headers)
    claims = _verify_with_pyjwt(_jwks(http), status["signature"])
    kid = jwt.get_unverified_header(status["signature"])["kid"]
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        _verify_with_pyjwt(_jwks(http), forged)


def test_rotation_keeps_old_signatures_verifiable(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    before, _ = finished_export(http, headers, options={"format": "json"})
    with transaction(runtime.sessions) as session:
        new_key, retired = service.rotate(session, runtime.settings)
    old_kid = jwt.get_unverified_header(before["signature"])["kid"]
    assert retired == [old_kid]

    after, content = finished_export(http, headers, options={"format": "csv"})
    assert jwt.get_unverified_header(after["signature"])["kid"] == new_key.kid != old_kid

    jwks = _jwks(http)
    assert [k["kid"] for k in jwks["keys"]] == [new_key.kid, old_kid]  # current first
    assert _verify_with_pyjwt(jwks, before["signature"])["jobId"] == before["jobId"]
    assert _verify_with_pyjwt(jwks, after["signature"])["sha256"] == hashlib.sha256(content).hexdigest()
    # The status of the old job still shows its original signature.
    again = http.get(f"/v1/test/42/events/{before['jobId']}", headers=headers).json()
    assert again["signature"] == before["signature"]


def test_the_readme_snippet_verifies_a_downloaded_export(
    http: TestClient, headers: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Verifying an export", 1)[1]
    match = re.search(r"```python\n(.*?)\n```", section, re.S)
    assert match
    snippet = match.group(1)
    assert len(snippet.splitlines()) == 5

    status, content = finished_export(http, headers)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jwks.json").write_text(http.get("/.well-known/jwks.json").text)
    (tmp_path / "export.json").write_bytes(content)
    namespace: dict[str, Any] = {"signature": status["signature"]}
    exec(snippet, namespace)  # noqa: S102  (our own docs)
    assert namespace["claims"]["jobId"] == status["jobId"]

    (tmp_path / "export.json").write_bytes(content.replace(b"cand-0", b"cand-9", 1))
    with pytest.raises(AssertionError):
        exec(snippet, {"signature": status["signature"]})  # noqa: S102
    with pytest.raises(jwt.InvalidSignatureError):
        exec(snippet, {"signature": _edit_payload(status["signature"], sha256="0" * 64)})  # noqa: S102
