"""Units of the sender: address checks, secrets, signatures, Retry-After, the retry schedule."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from examtrail.core import crypto
from examtrail.core.logging import logging_config
from examtrail.core.settings import Settings
from examtrail.webhooks import sender
from examtrail.webhooks.service import retry_delay
from tests.support.logs import configured_levels
from tests.support.receiver import Receiver, Step


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert sender.address_problem(address) == problem


def test_ip_literal_endpoints_are_checked_without_dns() -> None:
    url = sender.parse_endpoint("https://[::1]:8443/x")
    with pytest.raises(sender.EndpointNotAllowedError, match="loopback"):
        sender.check_endpoint(url, allow_private=False)
    assert sender.check_endpoint(url, allow_private=True) == ["::1"]


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://h/x",
        "h/x",
        "http://",
        "http://u:p@h/x",
        "http://h/x#f",
        "http://h/ x",
        "http://h/\x00",
        "javascript:1",
    ],
)
def test_parse_endpoint_refuses(raw: str) -> None:
    with pytest.raises(sender.InvalidEndpointError):
        sender.parse_endpoint(raw)


def test_parse_endpoint_accepts_http_and_https() -> None:
    assert sender.parse_endpoint("https://hooks.example.com/a?b=1").host == "hooks.example.com"
    assert sender.parse_endpoint("http://127.0.0.1:9000/").port == 9000


def test_new_secret_is_standard_webhooks_compatible() -> None:
    secret = sender.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert sender.check_secret(secret) == secret
    assert sender.new_secret() != secret


@pytest.mark.parametrize(
    "bad",
    [
        "secret",
        "whsec_",
        "whsec_abc",
        "whsec_" + "A" * 31,
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
        "whsec_" + "*" * 32,
    ],
)
def test_check_secret_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        sender.check_secret(bad)


def test_secret_box_round_trip_and_binding() -> None:
    box = crypto.SecretBox(b"master-key")
    sealed = box.seal("whsec_abc", "sub-1")
    assert "whsec_abc" not in sealed
    assert box.open(sealed, "sub-1") == "whsec_abc"
    assert box.seal("whsec_abc", "sub-1") != sealed  # fresh nonce
    with pytest.raises(crypto.SecretUnavailableError):
        box.open(sealed, "sub-2")  # bound to its subscription
    with pytest.raises(crypto.SecretUnavailableError):
        crypto.SecretBox(b"another-key").open(sealed, "sub-1")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(crypto.SecretUnavailableError):
        box.open(tampered, "sub-1")
    with pytest.raises(crypto.SecretUnavailableError):
        box.open("v9.xyz", "sub-1")


def test_signed_headers_verify_with_the_standard_library_and_inspera_hmac() -> None:
    secret = sender.new_secret()
    body = '{"event":"x","ü":"ß"}'.encode()
    now = datetime.now(UTC)
    headers = sender.signed_headers(secret, "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"event": "x", "ü": "ß"}
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    assert headers["x-inspera-signature"] == expected
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(sender.new_secret()).verify(body, headers)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None), ("-5", None), ("\u00b3", None)],
)
def test_parse_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert sender.parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert sender.parse_retry_after("Mon, 01 Jun 2026 12:00:30 GMT", now) == 30.0
    assert sender.parse_retry_after("Mon, 01 Jun 2026 11:00:00 GMT", now) == 0.0


def test_retry_delay_follows_the_schedule_with_jitter() -> None:
    schedule = [0, 5, 300, 1800]
    assert retry_delay(schedule, 1, None) == pytest.approx(5, rel=0.1)
    assert retry_delay(schedule, 2, None) == pytest.approx(300, rel=0.1)
    assert retry_delay(schedule, 3, None) == pytest.approx(1800, rel=0.1)
    assert retry_delay(schedule, 4, None) is None  # exhausted: len(schedule) attempts in all
    delays = {retry_delay(schedule, 2, None) for _ in range(50)}
    assert len(delays) > 1
    assert all(d is not None and 270 <= d <= 330 for d in delays)


def test_retry_delay_honours_retry_after_up_to_a_cap() -> None:
    schedule = [0, 1, 1]
    assert retry_delay(schedule, 1, 30) == 30
    assert retry_delay(schedule, 1, 0) == pytest.approx(1, rel=0.1)  # never sooner than the schedule
    assert retry_delay(schedule, 1, 10 * 86_400) == 3600
    long_wait = retry_delay([0, 36_000], 1, 10 * 86_400)  # the cap grows with the schedule
    assert long_wait is not None
    assert 36_000 <= long_wait <= 39_600
    assert retry_delay(schedule, 3, 30) is None


def test_post_refuses_a_private_address_without_sending() -> None:
    result = sender.post("http://127.0.0.1:9/x", b"{}", {}, timeout=1, allow_private=False)
    assert result.status_code is None
    assert result.error is not None
    assert "loopback" in result.error
    assert not result.ok


def test_post_reports_a_refused_connection() -> None:
    from tests.support.ports import free_port

    result = sender.post(f"http://127.0.0.1:{free_port()}/x", b"{}", {}, timeout=1, allow_private=True)
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("connection failed")
    assert result.duration_ms < timedelta(seconds=5).total_seconds() * 1000


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_to_a_pinned_address_keeps_the_tls_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the checked IP, while SNI and certificate checks use the host name."""
    cert_path, key_path = _self_signed(tmp_path)
    seen: dict[str, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["host"] = self.headers["host"]
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)

    def remember_sni(_sock: object, server_name: str | None, _ctx: object) -> None:
        seen["sni"] = server_name

    server_context.sni_callback = remember_sni
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        trusting = ssl.create_default_context(cafile=str(cert_path))
        monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient, verify=trusting))
        result = sender.post(f"https://localhost:{port}/x", b"{}", {}, timeout=2, allow_private=True)
        assert result.status_code == 204, result
        assert seen == {"sni": "localhost", "host": f"localhost:{port}"}
        # The certificate names "localhost", not the IP: a URL with the IP fails verification.
        by_ip = sender.post(f"https://127.0.0.1:{port}/x", b"{}", {}, timeout=2, allow_private=True)
        assert by_ip.status_code is None
        assert "CERTIFICATE_VERIFY_FAILED" in (by_ip.error or "")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("schedule", ["", "[]", "0,-5", "[5, -1]"])
def test_a_retry_schedule_without_attempts_or_with_negative_waits_is_refused(schedule: str) -> None:
    """Finding 3: an empty schedule was accepted, and a Retry-After answer then crashed the
    recording of the attempt (``max(3600, *[])``) after the request had left: the delivery
    stayed claimed and was sent again after every lease, unlogged, forever."""
    with pytest.raises(ValueError, match="webhook_retry_schedule"):
        Settings(_env_file=None, webhook_retry_schedule=schedule)
    assert retry_delay([], 1, 30.0) is None  # and no schedule never raises


def test_the_documented_retry_schedule_is_the_default() -> None:
    assert Settings(_env_file=None).webhook_retry_schedule == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.mark.parametrize("mode", ["close", "reset", "partial"])
def test_a_connection_cut_before_the_answer_is_described(receiver: Receiver, mode: str) -> None:
    """A reset used to be logged as a bare ``ReadError: ``."""
    receiver.configure("/cut", script=[Step(200, mode=mode)])
    result = sender.post(receiver.url("/cut"), b"{}", {}, timeout=5, allow_private=True)
    assert result.status_code is None and not result.ok
    assert result.error is not None
    assert not result.error.rstrip().endswith(":"), result.error


def test_the_endpoint_url_is_not_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """Finding 4: httpx logged every webhook request's URL at INFO, and an endpoint's path or
    query may carry the receiver's own token (the audit log keeps only the host for that reason)."""
    loggers = logging_config(Settings(_env_file=None, log_level="DEBUG"))["loggers"]
    caplog.set_level(logging.DEBUG)
    with configured_levels(loggers):
        result = sender.post(
            receiver.url("/hook?receiver_key=query-token-1234"), b"{}", {}, timeout=5, allow_private=True
        )
    assert result.status_code == 200
    assert "query-token-1234" not in caplog.text
