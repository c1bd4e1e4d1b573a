from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from examtrail.core.logging import RedactSecrets, redact


def test_redacts_keys_and_signatures_in_query_strings() -> None:
    line = (
        "POST /api/authenticate/token/?grant_type=authorization_code&client_id=et_1&code=etk_SECRET HTTP/1.1"
    )
    assert "etk_SECRET" not in redact(line)
    assert "client_id=et_1" in redact(line)
    link = "GET /files/a.json?expires=1&sig=abcdef&filename=x.json"
    assert redact(link) == "GET /files/a.json?expires=1&sig=[redacted]&filename=x.json"
    s3 = "https://s3/x?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=ff00"
    assert "AKIA" not in redact(s3)
    assert "ff00" not in redact(s3)


def test_access_log_record_is_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", "/api/authenticate/token/?client_id=a&code=etk_SECRET", "1.1", 200),
        None,
    )
    RedactSecrets().filter(record)
    assert "etk_SECRET" not in record.getMessage()


def test_api_key_never_reaches_the_logs(
    http: TestClient, runtime: object, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.api import create_client

    client_id, key = create_client(runtime)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG):
        http.post(f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}&code={key}")
        http.post(f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}&code=wrong")
    assert caplog.records
    assert key not in caplog.text
