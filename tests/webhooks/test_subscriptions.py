"""The subscriptions API: verification, validation, secrets, tenant isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token
from tests.support.receiver import Receiver
from tests.webhooks.helpers import FAILED, FINISHED, subscribe, verify


def _stored_subscriptions(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM webhook_subscriptions")).scalar_one())


def test_events_lists_both_export_events(http: TestClient, headers: dict[str, str]) -> None:
    response = http.get("/v1/subscription/events", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"events": [FINISHED, FAILED]}


def test_subscribe_verifies_the_endpoint_and_returns_the_secret_once(
    http: TestClient, headers: dict[str, str], receiver: Receiver
) -> None:
    response = http.post(
        "/v1/subscription", json={"event": FINISHED, "endpoint": receiver.url()}, headers=headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) >= {"subscriptionId", "event", "endpoint", "secret", "lastModified"}
    assert created["event"] == FINISHED
    assert created["endpoint"] == receiver.url()
    assert created["status"] == "active"
    assert created["secret"].startswith("whsec_")
    assert response.headers["location"] == f"/v1/subscription/{created['subscriptionId']}"

    # The endpoint got a signed verification POST before the subscription was saved.
    [verification] = receiver.requests("/hook")
    assert verification.method == "POST"
    payload = verify(verification, created["secret"])
    assert payload["event"] == "verification"
    assert payload["subscriptionId"] == created["subscriptionId"]
    assert payload["subscribedEvent"] == FINISHED

    listed = http.get("/v1/subscription", headers=headers)
    assert listed.status_code == 200
    [item] = listed.json()["subscriptions"]
    assert item["subscriptionId"] == created["subscriptionId"]
    assert set(item) >= {"subscriptionId", "event", "endpoint", "lastModified"}
    assert "secret" not in item
    one = http.get(f"/v1/subscription/{created['subscriptionId']}", headers=headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert created["secret"] not in listed.text + one.text


def test_secret_is_stored_encrypted(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    created = subscribe(http, headers, receiver.url())
    secret_body = created["secret"].removeprefix("whsec_")
    with runtime.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM webhook_subscriptions")).mappings().all()
    dumped = repr([dict(row) for row in rows])
    assert secret_body not in dumped
    assert created["secret"] not in dumped


def test_a_given_secret_is_used(http: TestClient, headers: dict[str, str], receiver: Receiver) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    created = subscribe(http, headers, receiver.url(), secret=secret)
    assert created["secret"] == secret
    [verification] = receiver.requests("/hook")
    assert verify(verification, secret)["event"] == "verification"


@pytest.mark.parametrize("answer", [500, 404, 301, 410])
def test_failing_verification_refuses_and_stores_nothing(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime, answer: int
) -> None:
    receiver.configure("/hook", status=answer)
    response = http.post(
        "/v1/subscription", json={"event": FINISHED, "endpoint": receiver.url()}, headers=headers
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "endpoint_verification_failed"
    assert str(answer) in body["message"]
    assert body["details"][0]["statusCode"] == answer
    assert len(receiver.requests("/hook")) == 1
    assert _stored_subscriptions(runtime) == 0
    assert http.get("/v1/subscription", headers=headers).json() == {"subscriptions": []}


def test_unreachable_endpoint_is_refused(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    endpoint = receiver.url()
    receiver.stop()  # nothing listens there any more
    response = http.post("/v1/subscription", json={"event": FINISHED, "endpoint": endpoint}, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "endpoint_verification_failed"
    assert "connection" in body["message"].lower()
    assert _stored_subscriptions(runtime) == 0


@pytest.mark.settings(webhook_timeout_seconds=0.3)
def test_slow_verification_times_out(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    receiver.configure("/hook", delay=2)
    response = http.post(
        "/v1/subscription", json={"event": FINISHED, "endpoint": receiver.url()}, headers=headers
    )
    assert response.status_code == 400
    assert "timed out" in response.json()["message"]
    assert _stored_subscriptions(runtime) == 0


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:{port}/hook",
        "https://[fe80::1]/hook",
        "http://100.64.0.1/hook",
    ],
)
@pytest.mark.settings(webhook_allow_private=False)
def test_private_endpoints_are_refused_unless_allowed(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime, endpoint: str
) -> None:
    url = endpoint.format(port=receiver.port)
    response = http.post("/v1/subscription", json={"event": FINISHED, "endpoint": url}, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "endpoint_not_allowed"
    assert body["details"][0]["field"] == "endpoint"
    assert receiver.requests() == []  # refused before any request was made
    assert _stored_subscriptions(runtime) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"event": FINISHED, "endpoint": "ftp://127.0.0.1/hook"}, 400, "invalid_endpoint"),
        ({"event": FINISHED, "endpoint": "not a url"}, 400, "invalid_endpoint"),
        ({"event": FINISHED, "endpoint": "/relative/path"}, 400, "invalid_endpoint"),
        ({"event": FINISHED, "endpoint": "http://user:pw@127.0.0.1/hook"}, 400, "invalid_endpoint"),
        ({"event": FINISHED, "endpoint": "http://127.0.0.1/hook#frag"}, 400, "invalid_endpoint"),
        ({"event": FINISHED, "endpoint": "http://127.0.0.1/" + "a" * 2100}, 422, "validation_error"),
        ({"event": FINISHED}, 422, "validation_error"),
        ({"event": "event_unknown", "endpoint": "http://127.0.0.1/hook"}, 422, "validation_error"),
        ({"event": FINISHED, "endpoint": "http://127.0.0.1/hook", "extra": 1}, 422, "validation_error"),
        ({"event": FINISHED, "endpoint": 5}, 422, "validation_error"),
        (
            {"event": FINISHED, "endpoint": "http://127.0.0.1/hook", "secret": "short"},
            422,
            "validation_error",
        ),
        (
            {"event": FINISHED, "endpoint": "http://127.0.0.1/hook", "secret": "whsec_c2hvcnQ="},
            422,
            "validation_error",
        ),
        (
            {"event": FINISHED, "endpoint": "http://127.0.0.1/hook", "secret": "whsec_!!!!"},
            422,
            "validation_error",
        ),
        ([], 422, "validation_error"),
    ],
)
def test_bad_input_gets_a_clear_error(
    http: TestClient, headers: dict[str, str], runtime: Runtime, body: object, status: int, code: str
) -> None:
    response = http.post("/v1/subscription", json=body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == code
    assert answer["message"]
    assert isinstance(answer["details"], list)
    assert _stored_subscriptions(runtime) == 0


def test_malformed_json_is_400(http: TestClient, headers: dict[str, str]) -> None:
    response = http.post(
        "/v1/subscription", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_duplicate_subscription_conflicts(
    http: TestClient, headers: dict[str, str], receiver: Receiver
) -> None:
    first = subscribe(http, headers, receiver.url())
    response = http.post(
        "/v1/subscription", json={"event": FINISHED, "endpoint": receiver.url()}, headers=headers
    )
    assert response.status_code == 409
    assert response.json()["error"] == "subscription_exists"
    assert response.json()["details"] == [{"subscriptionId": first["subscriptionId"]}]
    # Another event to the same endpoint is a different subscription.
    subscribe(http, headers, receiver.url(), event=FAILED)
    assert len(http.get("/v1/subscription", headers=headers).json()["subscriptions"]) == 2


def test_delete(http: TestClient, headers: dict[str, str], receiver: Receiver) -> None:
    created = subscribe(http, headers, receiver.url())
    path = f"/v1/subscription/{created['subscriptionId']}"
    assert http.delete(path, headers=headers).status_code == 204
    assert http.get(path, headers=headers).status_code == 404
    assert http.delete(path, headers=headers).status_code == 404
    assert http.get("/v1/subscription", headers=headers).json() == {"subscriptions": []}


def test_authentication_and_scope(http: TestClient, runtime: Runtime) -> None:
    assert http.get("/v1/subscription").status_code == 401
    assert http.post("/v1/subscription", json={}).status_code == 401
    client_id, key = create_client(runtime, "uni-a", scopes="ingest")
    ingest_only = bearer(get_token(http, client_id, key))
    response = http.get("/v1/subscription", headers=ingest_only)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_another_tenant_cannot_see_or_touch_a_subscription(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], receiver: Receiver
) -> None:
    created = subscribe(http, headers, receiver.url())
    sid = created["subscriptionId"]
    assert http.get("/v1/subscription", headers=other_headers).json() == {"subscriptions": []}

    missing = "00000000-0000-0000-0000-000000000000"
    for method, template in [
        ("GET", "/v1/subscription/{sid}"),
        ("DELETE", "/v1/subscription/{sid}"),
        ("GET", "/v1/subscription/{sid}/deliveries"),
        ("POST", "/v1/subscription/{sid}/deliveries/{missing}/redeliver"),
    ]:
        theirs = http.request(method, template.format(sid=sid, missing=missing), headers=other_headers)
        nothing = http.request(method, template.format(sid=missing, missing=missing), headers=other_headers)
        assert theirs.status_code == 404, (method, template, theirs.text)
        # Indistinguishable from a subscription that does not exist.
        assert theirs.json()["error"] == nothing.json()["error"] == "subscription_not_found"
        assert theirs.json()["message"].replace(sid, "X") == nothing.json()["message"].replace(missing, "X")

    # Still there for its owner.
    assert http.get(f"/v1/subscription/{sid}", headers=headers).status_code == 200
