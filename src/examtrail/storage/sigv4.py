"""Fast AWS Signature V4 query-string pre-signing of S3 GET URLs (path-style).

botocore's ``generate_presigned_url`` costs 200-350 µs a link (endpoint rule resolution,
request serialisation, event hooks); an export with 20,000 attachments spent seconds in
it. This computes the same URL — byte for byte, see the tests — in a few microseconds,
caching the day's signing key.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


def _uri_encode(value: str, safe: str = _UNRESERVED) -> str:
    return quote(value, safe=safe)


@lru_cache(maxsize=32)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class S3Presigner:
    """Pre-signs GetObject URLs for one endpoint and bucket with static credentials."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        # The Host header as signed: the default port is left out, as HTTP clients send it.
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        host = parts.hostname or ""
        self._host = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self._prefix_path = parts.path.rstrip("/")
        self._bucket = bucket
        self._region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token

    def url(
        self,
        key: str,
        expires_in: int,
        *,
        response_params: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> str:
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        scope = f"{date}/{self._region}/s3/aws4_request"
        params = dict(response_params or {})
        params.update(
            {
                "X-Amz-Algorithm": ALGORITHM,
                "X-Amz-Credential": f"{self._access_key}/{scope}",
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": str(expires_in),
                "X-Amz-SignedHeaders": "host",
            }
        )
        if self._session_token:
            params["X-Amz-Security-Token"] = self._session_token
        canonical_query = "&".join(
            f"{_uri_encode(name)}={_uri_encode(value)}" for name, value in sorted(params.items())
        )
        path = f"{self._prefix_path}/{_uri_encode(self._bucket)}/{_uri_encode(key, safe='/' + _UNRESERVED)}"
        canonical_request = f"GET\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        string_to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signing_key = _signing_key(self._secret_key, date, self._region, "s3")
        signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._origin}{path}?{canonical_query}&X-Amz-Signature={signature}"
