from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from examtrail.core.logging import RedactSecrets, redact
from examtrail.core.settings import Settings


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


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("examtrail.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_level_logger_message_and_context() -> None:
    from examtrail.core.context import job_context, request_id_var
    from examtrail.core.logging import JsonFormatter

    token = request_id_var.set("req-9")
    try:
        with job_context(job_id="job-1", test_id=42, tenant=7):
            line = orjson.loads(JsonFormatter().format(_record("export %s slow", "job-1", rows=3)))
    finally:
        request_id_var.reset(token)
    assert line["level"] == "WARNING"
    assert line["logger"] == "examtrail.test"
    assert line["message"] == "export job-1 slow"
    assert line["time"].endswith("+00:00")
    assert (line["request_id"], line["job_id"], line["test_id"], line["tenant"]) == ("req-9", "job-1", 42, 7)
    assert line["rows"] == 3
    # A caller's own field of the same name never clashes with the captured context.
    from examtrail.core.logging import install_redaction

    install_redaction()
    with job_context(job_id="job-2", test_id=43, tenant=8):
        record = logging.getLogger("examtrail.test").makeRecord(
            "examtrail.test", logging.INFO, __file__, 1, "m", (), None, extra={"job_id": "mine"}
        )
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["job_id"], line["test_id"]) == ("mine", 43)
    # Outside a request or job, no context keys at all.
    bare = orjson.loads(JsonFormatter().format(_record("plain")))
    assert not {"request_id", "job_id", "test_id", "tenant"} & set(bare)


def test_json_and_text_lines_redact_extra_fields_and_exceptions() -> None:
    from examtrail.core.logging import JsonFormatter, TextFormatter

    try:
        raise RuntimeError("refused Bearer eyJ.secret.token")
    except RuntimeError:
        import sys

        record = _record("calling %s", "https://x/?code=etk_LEAK", url="https://h/p?sig=abc&x=1")
        record.exc_info = sys.exc_info()
    json_line = JsonFormatter().format(record)
    text_line = TextFormatter().format(record)
    for line in (json_line, text_line):
        assert "etk_LEAK" not in line
        assert "sig=abc" not in line
        assert "eyJ.secret.token" not in line
    assert orjson.loads(json_line)["url"] == "https://h/p?sig=[redacted]&x=1"
    assert "url=https://h/p?sig=[redacted]&x=1" in text_line


def test_log_format_defaults_to_json_off_a_terminal(settings: Settings) -> None:
    # pytest captures stderr: not a terminal.
    assert settings.resolved_log_format == "json"
    assert Settings(_env_file=None, log_format="text").resolved_log_format == "text"


def test_every_request_logs_one_access_line(
    http: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from examtrail.core.logging import JsonFormatter

    with caplog.at_level(logging.INFO, logger="examtrail.access"):
        http.get("/v1/test/77/events/abc", headers={**headers, "X-Request-ID": "trace-1"})
        http.get("/wp-admin/setup.php", headers={"X-Request-ID": "trace-2"})
    access = [r for r in caplog.records if r.name == "examtrail.access"]
    assert len(access) == 2
    first, second = (orjson.loads(JsonFormatter().format(r)) for r in access)
    assert first["method"] == "GET"
    assert first["route"] == "/v1/test/{testId}/events/{jobId}"
    assert first["path"] == "/v1/test/77/events/abc"
    assert first["status"] == 404
    assert first["request_id"] == "trace-1"
    assert isinstance(first["duration_ms"], float)
    # Unmatched paths share one label.
    assert (second["route"], second["status"], second["request_id"]) == ("unmatched", 404, "trace-2")


def test_export_logs_start_and_end_with_job_fields(
    http: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from examtrail.core.logging import JsonFormatter
    from tests.support.api import seed_test, wait_for_job

    seed_test(http, headers, test_id=31, candidates=2, events_per_candidate=3)
    with caplog.at_level(logging.INFO, logger="examtrail.exports"):
        job_id = http.post("/v1/test/31/events", headers=headers).json()["jobId"]
        status = wait_for_job(http, headers, 31, job_id)
        assert status["status"] == "finished"

        def export_lines() -> list[dict[str, Any]]:
            return [
                orjson.loads(JsonFormatter().format(r))
                for r in list(caplog.records)
                if r.name == "examtrail.exports.service" and job_id in r.getMessage()
            ]

        # The closing line follows the commit that the poll sees.
        deadline = time.monotonic() + 10
        while not any(line.get("outcome") for line in export_lines()) and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = export_lines()
    started = [line for line in lines if "started" in line["message"]]
    ended = [line for line in lines if line.get("outcome") == "finished"]
    assert len(started) == 1 and len(ended) == 1
    for line in (started[0], ended[0]):
        assert (line["job_id"], line["test_id"]) == (job_id, 31)
        assert isinstance(line["tenant"], int)
    assert ended[0]["events"] == 6
    assert ended[0]["bytes"] == status["fileSize"]
    assert ended[0]["duration_ms"] >= 0
