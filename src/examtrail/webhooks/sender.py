"""Everything that touches a receiver: endpoint checks, secrets, signatures, the HTTP POST.

* Endpoints are http(s) URLs whose host resolves to public addresses only (unless
  ``webhook_allow_private``). The check runs when subscribing *and* before every send,
  and the request then goes to the very address that was checked (the TLS name stays
  the endpoint's host name), so a DNS answer that changes in between cannot redirect
  a notification into the private network.
* Secrets are ``whsec_<base64>``; at rest they are AES-GCM encrypted (core.crypto) under a key derived
  (HKDF) from the service's secret key, bound to their subscription id.
* Every request is signed twice over the exact bytes sent: Standard Webhooks
  (``webhook-id``/``webhook-timestamp``/``webhook-signature``) and Inspera's
  ``X-Inspera-Signature`` (hex HMAC-SHA1 of the body keyed with the secret string).
* Nothing here logs a secret, a signature or a request body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from standardwebhooks import Webhook

from examtrail import __version__
from examtrail.core.schemas import is_ascii_digits

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
MAX_ENDPOINT_LENGTH = 2048
USER_AGENT = f"Examtrail-Webhooks/{__version__}"
# Answers that mean "slow down": their Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
_MAX_ADDRESSES_TRIED = 3
_SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- secrets -----------------------------------------------------------------------


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_MIN_BYTES)).decode()


def check_secret(value: str) -> str:
    """A client-chosen secret must be a Standard Webhooks secret; raises ValueError."""
    if not _SECRET_RE.match(value) or len(value[len(SECRET_PREFIX) :]) % 4:
        raise ValueError("the secret must be 'whsec_' followed by padded base64")
    try:
        raw = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("the secret must be 'whsec_' followed by padded base64") from None
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        raise ValueError(f"the secret must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes")
    return value


# --- signatures --------------------------------------------------------------------


def inspera_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signed_headers(secret: str, webhook_id: str, sent_at: datetime, body: bytes) -> dict[str, str]:
    """The headers of one request; ``body`` must be exactly the bytes that are sent."""
    moment = sent_at.astimezone(UTC).replace(microsecond=0)
    signature = Webhook(secret).sign(webhook_id, moment, body.decode())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "x-inspera-signature": inspera_signature(secret, body),
    }


# --- endpoints ---------------------------------------------------------------------


class EndpointError(Exception):
    code = "invalid_endpoint"


class InvalidEndpointError(EndpointError):
    code = "invalid_endpoint"


class EndpointUnresolvableError(EndpointError):
    code = "endpoint_unresolvable"


class EndpointNotAllowedError(EndpointError):
    code = "endpoint_not_allowed"


def parse_endpoint(raw: str) -> httpx.URL:
    """Syntax only: an absolute http(s) URL with a host, no credentials, no fragment."""
    if len(raw) > MAX_ENDPOINT_LENGTH:
        raise InvalidEndpointError(f"the endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise InvalidEndpointError("the endpoint contains whitespace or control characters")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidEndpointError(f"the endpoint is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise InvalidEndpointError("the endpoint must be an http:// or https:// URL")
    if not url.host:
        raise InvalidEndpointError("the endpoint has no host")
    if url.userinfo:
        raise InvalidEndpointError(
            "credentials in the endpoint URL are not supported; receivers verify the signature"
        )
    if url.fragment:
        raise InvalidEndpointError("the endpoint must not have a #fragment")
    return url


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(str(embedded))
            if inner:
                return inner
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    # Deprecated (RFC 3879) but still routed inside some sites; Python counts it as global.
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise EndpointUnresolvableError(f"the endpoint's host {host!r} cannot be resolved ({exc})") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise EndpointUnresolvableError(f"the endpoint's host {host!r} has no address")
    return addresses


def check_endpoint(url: httpx.URL, *, allow_private: bool) -> list[str]:
    """Resolve the endpoint; refuse it if any address is not public (unless allowed).

    Returns the addresses to connect to. Any non-public address refuses the whole name:
    a host that resolves to both would otherwise be a way in.
    """
    addresses = resolve(url.host, _port(url))
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise EndpointNotAllowedError(
                    f"the endpoint's host resolves to a {problem} address ({address}); "
                    "only public addresses are allowed"
                )
    return addresses


# --- sending -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        if self.status_code is not None:
            return f"HTTP {self.status_code}"
        return self.error or "no answer"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if is_ascii_digits(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _describe_error(exc: Exception, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).strip() or "connection failed"
        return f"connection failed: {text}"[:500]
    lines = str(exc).strip().splitlines()
    # A reset connection often comes without a message ("ReadError: " tells the log nothing).
    detail = lines[0] if lines else "the connection was closed or reset before a complete answer"
    return f"{type(exc).__name__}: {detail}"[:500]


# Name resolution runs here, so a resolver that hangs can be abandoned at the deadline
# (its thread finishes on its own; the caller does not wait for it).
_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="examtrail-webhook-dns")


def check_endpoint_within(url: httpx.URL, *, allow_private: bool, timeout: float) -> list[str]:
    """``check_endpoint`` that gives up after ``timeout`` seconds (a hanging resolver)."""
    future = _RESOLVER.submit(check_endpoint, url, allow_private=allow_private)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise EndpointUnresolvableError(
            f"the endpoint's host {url.host!r} could not be resolved within {timeout:g}s"
        ) from None


def post(
    endpoint: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
) -> SendResult:
    """POST ``body`` to ``endpoint``; never raises, never follows redirects.

    ``timeout`` is one deadline for the whole request: name resolution, connecting, TLS,
    sending the body and receiving the complete status line and headers. A receiver that
    dribbles its answer byte by byte, or never answers, is cut off when it passes; the
    request is cancelled and its connection closed. The endpoint is resolved and checked
    now, and the connection goes to a checked address. Call it from a thread without a
    running event loop (worker threads, the verification pool).
    """
    started = time.monotonic()
    try:
        return asyncio.run(_post_within(endpoint, body, headers, timeout, allow_private, started))
    except Exception as exc:  # never raise: the caller records the attempt
        return SendResult(None, _describe_error(exc, timeout), _elapsed_ms(started))


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _post_within(
    endpoint: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool, started: float
) -> SendResult:
    try:
        return await asyncio.wait_for(
            _post(endpoint, body, headers, timeout, allow_private, started), timeout
        )
    except TimeoutError:
        return SendResult(
            None, f"timed out: no complete answer within the {timeout:g}s deadline", _elapsed_ms(started)
        )


async def _post(
    endpoint: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool, started: float
) -> SendResult:
    try:
        url = parse_endpoint(endpoint)
        loop = asyncio.get_running_loop()
        addresses = await asyncio.wrap_future(
            _RESOLVER.submit(check_endpoint, url, allow_private=allow_private), loop=loop
        )
    except EndpointError as exc:
        return SendResult(None, str(exc)[:500], _elapsed_ms(started))

    host_header = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request_headers = {**headers, "host": host_header}
    failure = "no address to connect to"
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
    ) as client:
        for address in addresses[:_MAX_ADDRESSES_TRIED]:
            pinned = url.copy_with(host=address.split("%", 1)[0])
            try:
                async with client.stream(
                    "POST", pinned, content=body, headers=request_headers, extensions=extensions
                ) as response:
                    retry_after = None
                    if response.status_code in RETRY_AFTER_STATUSES:
                        retry_after = parse_retry_after(response.headers.get("retry-after"))
                    # The answer's body is never read: only the status counts.
                    return SendResult(response.status_code, None, _elapsed_ms(started), retry_after)
            except httpx.ConnectError as exc:
                failure = _describe_error(exc, timeout)
                continue  # another address of the same name may work
            except httpx.HTTPError as exc:
                return SendResult(None, _describe_error(exc, timeout), _elapsed_ms(started))
    return SendResult(None, failure, _elapsed_ms(started))
