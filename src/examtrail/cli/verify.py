"""``examtrail verify FILE --signature JWS``: check a downloaded export offline.

Needs nothing but the file, its signature (the export status's ``signature``) and the
service's public keys: a JWKS URL (default ``EXAMTRAIL_PUBLIC_URL/.well-known/jwks.json``)
or a saved JWKS file. It does what any JOSE library can: verify the JWS with the key its
``kid`` names (EdDSA only), then compare the file's size and SHA-256 with the payload's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
import typer
from rich.text import Text

from examtrail.cli.errors import CliError, output_console
from examtrail.core.settings import get_settings

console = output_console()
_CHUNK = 1024 * 1024


def _load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=30, follow_redirects=True)
            response.raise_for_status()
            loaded: Any = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise CliError(f"cannot fetch the JWKS from {source}: {exc}") from None
    else:
        try:
            loaded = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the JWKS file {source}: {exc}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("keys"), list):
        raise CliError(f"{source} is not a JWKS (a JSON object with a `keys` list)")
    return loaded


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def _say(*parts: str | tuple[str, str]) -> None:
    """One line of plain text: what the line shows (a kid from the signature's header, a claim,
    a URL or file name) is never read as Rich markup."""
    console.print(Text.assemble(*parts))


def _check(ok: bool, what: str) -> bool:
    _say(("ok  ", "green") if ok else ("FAIL", "red"), " ", what)
    return ok


def _read_signature(signature: str) -> str:
    """The JWS itself, or the content of the file ``@FILE`` names."""
    if not signature.startswith("@"):
        return signature.strip()
    name = signature[1:]
    if not name:
        raise CliError("--signature: give the file after @ (@FILE)")
    try:
        return Path(name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"--signature: cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"--signature: {name} is not UTF-8 text (a JWS is ASCII)") from None


def verify(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="The downloaded export file.", exists=True, dir_okay=False
    ),
    signature: str = typer.Option(
        ..., metavar="JWS", help="The export status's `signature` (or @FILE holding it)."
    ),
    jwks: str = typer.Option(
        "",
        metavar="URL_OR_FILE",
        help="The public keys: a URL or a saved JWKS file (offline).",
        show_default="EXAMTRAIL_PUBLIC_URL/.well-known/jwks.json",
    ),
) -> None:
    """Verify an export file against its signature: the JWS (EdDSA, with the key its kid names),
    then the file's size and SHA-256. Prints each check; exits 1 if any fails."""
    token = _read_signature(signature)
    source = jwks or get_settings().public_url.rstrip("/") + "/.well-known/jwks.json"
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise CliError(f"the signature is not a compact JWS: {exc}") from None
    kid, alg = header.get("kid"), header.get("alg")
    keys = _load_jwks(source)
    _say(f"key set    {source}")
    ok = _check(alg == "EdDSA", f"algorithm {alg!r} is EdDSA")
    match = [k for k in keys["keys"] if isinstance(k, dict) and k.get("kid") == kid]
    ok = _check(bool(match), f"key {kid} is in the key set") and ok
    if not ok:
        raise typer.Exit(1)
    try:
        claims = jwt.decode(token, jwt.PyJWK(match[0], algorithm="EdDSA"), algorithms=["EdDSA"])
        signed = True
    except (jwt.InvalidTokenError, jwt.PyJWKError) as exc:
        # A damaged key in the set fails like a bad signature: nothing was verified.
        claims, signed = {}, False
        _say(f"     ({exc})")
    if not _check(signed, "the signature is valid for this payload"):
        raise typer.Exit(1)
    for name in ("jobId", "testId", "tenant", "created", "options"):
        _say(f"     {name:<9}{json.dumps(claims.get(name))}")
    size, sha256 = _file_digest(file)
    ok = _check(
        size == claims.get("fileSize"), f"file size {size} = signed fileSize {claims.get('fileSize')}"
    )
    ok = _check(sha256 == claims.get("sha256"), f"file SHA-256 {sha256} = signed sha256") and ok
    if not ok:
        raise typer.Exit(1)
    _say(("verified", "bold green"), f": {file} is export {claims.get('jobId')} as signed")
