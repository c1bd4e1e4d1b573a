"""Signed exports: the service's Ed25519 keys, export signatures (JWS) and the JWKS."""
