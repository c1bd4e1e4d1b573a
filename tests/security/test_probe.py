"""The black-box probe kept in the suite: the tenant-by-endpoint matrix, link tampering,
SSRF address forms and hostile bodies. Runs on both deployments (``make test``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, fetch, get_token, tamper
from tests.support.receiver import Receiver
from tests.webhooks.helpers import FINISHED, deliveries, export, subscribe, wait_for_delivery

A_TEST, USER, EVENT_ID, FILE = 42, 100, "e-100-0", "evidence.txt"


@pytest.fixture
def tenant_a(http: TestClient, headers: dict[str, str], receiver: Receiver) -> dict[str, Any]:
    """Everything tenant A owns: a test with a file, a finished export, a subscription and a delivery."""
    subscription = subscribe(http, headers, receiver.url())
    job = export(http, headers, A_TEST)  # seeds the test, candidates 100-101 and their events
    path = f"/v1/test/{A_TEST}/candidates/{USER}/events/{EVENT_ID}/files/{FILE}"
    assert http.put(path, content=b"evidence", headers=headers).status_code == 201
    delivery = wait_for_delivery(http, headers, subscription["subscriptionId"], "succeeded")
    return {"job": job, "subscription": subscription["subscriptionId"], "delivery": delivery["deliveryId"]}


def test_another_tenant_gets_404_on_every_route(
    http: TestClient,
    runtime: Runtime,
    headers: dict[str, str],
    other_headers: dict[str, str],
    tenant_a: dict[str, Any],
) -> None:
    job, sub, delivery = tenant_a["job"]["jobId"], tenant_a["subscription"], tenant_a["delivery"]
    # Erasure and legal hold need the erase scope: each tenant gets a client that has it.
    eraser_a = bearer(get_token(http, *create_client(runtime, "uni-a", "ingest,export,erase")))
    eraser_b = bearer(get_token(http, *create_client(runtime, "uni-b", "ingest,export,erase")))
    assert http.put("/v1/test/99", json={"title": "erased"}, headers=headers).status_code == 201
    erasure = http.delete("/v1/test/99", headers=eraser_a).json()["jobId"]
    event = {"event": "x", "timeStamp": "2026-01-01T00:00:00Z"}
    probes: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/test/{A_TEST}", None),
        ("PUT", f"/v1/test/{A_TEST}/candidates", [{"userId": 5, "candidateId": "c"}]),
        ("POST", f"/v1/test/{A_TEST}/candidates/{USER}/events", event),
        ("PUT", f"/v1/test/{A_TEST}/candidates/{USER}/events/{EVENT_ID}/files/{FILE}", b"overwrite"),
        ("GET", f"/v1/test/{A_TEST}/events?jobId={job}", None),
        ("DELETE", f"/v1/test/{A_TEST}/events?jobId={job}", None),
        ("GET", f"/v1/test/{A_TEST}/events/{job}", None),
        ("GET", f"/v1/test/{A_TEST}/events/jobs", None),
        ("DELETE", f"/v1/test/{A_TEST}/events/{job}", None),
        ("POST", f"/v1/test/{A_TEST}/events", None),
        ("GET", f"/v1/test/{A_TEST}/events", None),
        ("GET", f"/v1/subscription/{sub}", None),
        ("GET", f"/v1/subscription/{sub}/deliveries", None),
        ("POST", f"/v1/subscription/{sub}/deliveries/{delivery}/redeliver", None),
        ("DELETE", f"/v1/subscription/{sub}", None),
    ]
    erase_probes: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/erasures/{erasure}", None),
        ("GET", f"/v1/test/{A_TEST}/hold", None),
        ("PUT", f"/v1/test/{A_TEST}/hold", None),
        ("DELETE", f"/v1/test/{A_TEST}/hold", None),
        ("DELETE", f"/v1/test/{A_TEST}/candidates/{USER}", None),
        ("DELETE", f"/v1/test/{A_TEST}", None),
    ]
    covered = set()
    for method, path, body in [*probes, *erase_probes]:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        caller = eraser_b if (method, path, body) in erase_probes else other_headers
        response = http.request(method, path, headers=caller, **kwargs)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        covered.add((method.lower(), _template(path)))
    # Tenant B's own test with A's job id is still 404.
    assert http.put("/v1/test/7", json={"title": "B"}, headers=other_headers).status_code == 201
    assert http.get(f"/v1/test/7/events?jobId={job}", headers=other_headers).status_code == 404
    assert http.get("/v1/subscription", headers=other_headers).json()["subscriptions"] == []
    # PUT /v1/test/{id} is an upsert in B's own namespace: B gets its own test, A's is untouched.
    assert http.put(f"/v1/test/{A_TEST}", json={"title": "B's"}, headers=other_headers).status_code == 201
    assert http.get(f"/v1/test/{A_TEST}", headers=headers).json()["title"] == f"Test {A_TEST}"
    assert http.get(f"/v1/test/{A_TEST}", headers=headers).json()["events"] > 0  # nothing erased
    assert http.get(f"/v1/test/{A_TEST}/hold", headers=eraser_a).json()["held"] is False
    assert http.get(f"/v1/subscription/{sub}", headers=headers).status_code == 200
    assert len(deliveries(http, headers, sub)) == 1
    # Every route with an id in its path was probed (the local store's links: see below).
    spec = http.get("/openapi.json").json()["paths"]
    templated = {
        (method, path)
        for path, operations in spec.items()
        if "{" in path and path != "/files/{key}"
        for method in operations
        if method != "put" or path != "/v1/test/{testId}"
    }
    assert templated <= covered, templated - covered


def _template(path: str) -> str:
    """The OpenAPI path template of a probed path."""
    parts = path.split("?")[0].split("/")
    out = []
    for index, part in enumerate(parts):
        previous = parts[index - 1] if index else ""
        if previous == "test":
            out.append("{testId}")
        elif previous == "candidates":
            out.append("{userId}")
        elif previous == "events" and parts[index - 3] == "test" and part != "jobs":
            out.append("{jobId}")
        elif previous == "events" and index + 1 < len(parts):
            out.append("{eventId}")
        elif previous == "files":
            out.append("{fileName}")
        elif previous == "subscription" and part != "events":
            out.append("{subscriptionId}")
        elif previous == "erasures":
            out.append("{jobId}")
        elif previous == "deliveries":
            out.append("{deliveryId}")
        else:
            out.append(part)
    return "/".join(out)


def test_tampered_links_are_refused(
    http: TestClient, headers: dict[str, str], tenant_a: dict[str, Any]
) -> None:
    url = tenant_a["job"]["downloadUrl"]
    assert fetch(http, url).status_code == 200
    parsed = httpx.URL(url)
    variants = [tamper(url)]
    for name, value in parsed.params.multi_items():
        if name.lower() in ("expires", "x-amz-expires"):
            variants.append(str(parsed.copy_set_param(name, str(int(value) + 3600))))
        if name.lower() in ("filename", "response-content-disposition"):
            variants.append(str(parsed.copy_set_param(name, "other.json")))
        variants.append(str(parsed.copy_remove_param(name)))
    other_key = parsed.copy_with(path=parsed.path.replace("exports", "attachments"))
    variants.append(str(other_key))
    variants.append(str(parsed.copy_with(path=parsed.path + "x")))
    for variant in variants:
        response = fetch(http, variant)
        assert response.status_code in (400, 403, 404, 422), (variant, response.status_code)


SSRF_FORMS = [
    "http://2130706433/hook",  # decimal 127.0.0.1
    "http://0x7f000001/hook",  # hex
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",  # short form
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:7f00:1]/hook",
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 around loopback
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 around the metadata address
    "http://[2002:7f00:1::]/hook",  # 6to4 around loopback
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4 around the metadata address
    "http://[fe80::1]/hook",  # link-local v6
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://169.254.170.2/v2/credentials",
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
    "http://10.0.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://localhost/hook",
    "http://localhost./hook",
    "http://public.example@127.0.0.1/hook",  # userinfo hiding the real host
    "http://127.0.0.1#@public.example/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
]


@pytest.mark.parametrize("endpoint", SSRF_FORMS)
@pytest.mark.settings(webhook_allow_private=False)
def test_ssrf_address_forms_are_refused(
    http: TestClient, headers: dict[str, str], runtime: Runtime, endpoint: str
) -> None:
    response = http.post("/v1/subscription", json={"event": FINISHED, "endpoint": endpoint}, headers=headers)
    assert response.status_code == 400, (endpoint, response.status_code, response.text)
    assert response.json()["error"] in ("invalid_endpoint", "endpoint_not_allowed", "endpoint_unresolvable")


@pytest.mark.parametrize("answer", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(
    http: TestClient, headers: dict[str, str], receiver: Receiver, answer: int
) -> None:
    receiver.configure("/redirect", status=answer)
    response = http.post(
        "/v1/subscription", json={"event": FINISHED, "endpoint": receiver.url("/redirect")}, headers=headers
    )
    assert response.status_code == 400 and response.json()["error"] == "endpoint_verification_failed"
    assert len(receiver.requests("/redirect")) == 1


def test_hostile_bodies_are_4xx(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    assert http.put("/v1/test/1", json={"title": "T"}, headers=headers).status_code == 201
    deep = b"[" * 100_000 + b"]" * 100_000
    nested_obj = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    events = "/v1/test/1/candidates/1/events"
    for body in (deep, nested_obj, b"\xff\xfe", b"", b"null", b"{" * 10, b'{"title": "x"' + b" " * 1000):
        for path, method in ((events, "POST"), ("/v1/test/1", "PUT"), ("/v1/test/1/candidates", "PUT")):
            response = http.request(
                method, path, content=body, headers={**headers, "content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (path, body[:20], response.status_code)
            json.loads(response.content)
    limit = runtime.settings.max_request_bytes
    big = b"[" + b'{"event":"x"},' * (50 * 1024 * 1024 // 14) + b"{}]"  # about 50 MB
    response = http.post(events, content=big, headers={**headers, "content-type": "application/json"})
    assert response.status_code == 413, response.text

    def chunks() -> Any:  # no content-length: the limit holds while streaming
        sent = 0
        while sent <= limit:
            yield b" " * 1024 * 1024
            sent += 1024 * 1024

    response = http.post(events, content=chunks(), headers={**headers, "content-type": "application/json"})
    assert response.status_code == 413, response.text
