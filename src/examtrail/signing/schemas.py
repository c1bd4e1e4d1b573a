from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Jwk(BaseModel):
    """One public key (RFC 8037 OKP, Ed25519)."""

    kty: Literal["OKP"] = "OKP"
    crv: Literal["Ed25519"] = "Ed25519"
    x: str = Field(description="The public key, base64url without padding")
    kid: str = Field(description="Key id: the `kid` in a signature's JWS header")
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"


class Jwks(BaseModel):
    """``GET /.well-known/jwks.json``: every key that ever signed an export, current first."""

    keys: list[Jwk]
