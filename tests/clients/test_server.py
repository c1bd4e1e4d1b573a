"""The client against real ``examtrail serve`` processes: the CLI and the Python API end to end.

One module-wide pair of deployments: ``a`` (token TTL of a few seconds, download links
through a proxy that can throttle and drop connections) and ``b`` (the second Examtrail of
the export -> ingest round trip).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examtrail_client import (
    AsyncExamtrailClient,
    ExamtrailClient,
    ExportJob,
    read_export,
)
from tests.clients.support import (
    DroppingProxy,
    Server,
    client_cli,
    event,
    start_servers,
    write_jsonl,
)
from tests.support.deployment import PRODUCTION
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

TOKEN_TTL = 3
S3 = os.environ.get("EXAMTRAIL_TEST_STORAGE") == "s3"
FAST = 200_000_000
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    a: Server
    b: Server
    proxy: DroppingProxy


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("clients")
    port = free_port()
    if S3:
        # Links are pre-signed for the proxy's address, which forwards to S3 unchanged.
        seaweed = request.getfixturevalue("seaweed")
        proxy = DroppingProxy("127.0.0.1", httpx.URL(seaweed.endpoint_url).port or 80, FAST)
        links = {"EXAMTRAIL_S3_PUBLIC_ENDPOINT_URL": proxy.url}
    else:
        proxy = DroppingProxy("127.0.0.1", port, FAST)
        links = {"EXAMTRAIL_PUBLIC_URL": proxy.url}
    proxy.start()
    servers = start_servers(
        tmp,
        request,
        [{"EXAMTRAIL_TOKEN_TTL_SECONDS": str(TOKEN_TTL), **links}, {"EXAMTRAIL_TOKEN_TTL_SECONDS": "3600"}],
        [port, None],
    )
    try:
        yield Stack(servers[0], servers[1], proxy)
    finally:
        for server in servers:
            server.stop()
        proxy.stop()


def api(server: Server) -> ExamtrailClient:
    return ExamtrailClient(server.url, server.client_id, server.api_key, poll_interval=0.2)


def seed(client: ExamtrailClient, test_id: int) -> dict[int, list[dict[str, Any]]]:
    """A small test: three candidates (one without events), flags, unicode, extraInfo."""
    client.put_test(test_id, f"Test {test_id}")
    client.put_candidates(
        test_id,
        [
            {"userId": 2, "candidateId": "B"},
            {"userId": 1, "candidateId": "A"},
            {"userId": 3, "candidateId": "C"},
        ],
    )
    sent = {1: [event(1, n, flagged=n == 2) for n in range(5)], 2: [event(2, n) for n in range(3)], 3: []}
    for user_id, events in sent.items():
        if events:
            client.ingest_events(test_id, user_id, events)
    return sent


def file_events(path: Path) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for candidate, ev in read_export(path):
        assert ev.pop("attachedFiles") == []
        found.setdefault(candidate.user_id, []).append(ev)
    return found


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_export_status_download_and_job_errors(stack: Stack, tmp_path: Path) -> None:
    with api(stack.a) as client:
        sent = seed(client, 501)
    out = tmp_path / "events.json"
    result = client_cli(["export", "501", "-o", str(out)], stack.a.cli_env())
    assert result.returncode == 0, result.stderr
    # Not a terminal: no progress bars, no escape codes, ids in full.
    assert "\x1b[" not in result.stdout + result.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.stdout
    assert "candidates 3, events 8" in result.stdout
    assert file_events(out) == {k: v for k, v in sent.items() if v}
    assert [c.user_id for c, _ in read_export(out)][:1] == [1]
    assert not Path(str(out) + ".part").exists()

    as_json = client_cli(["export", "501", "-o", str(tmp_path / "again.json"), "--json"], stack.a.cli_env())
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert set(summary) == {"jobId", "testId", "file", "fileSize", "sha256", "candidates", "events"}
    assert summary["testId"] == 501 and summary["candidates"] == 3 and summary["events"] == 8
    assert summary["fileSize"] == (tmp_path / "again.json").stat().st_size
    job_id = summary["jobId"]

    status = client_cli(["status", "501", job_id, "--json"], stack.a.cli_env())
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "finished"
    plain = client_cli(["status", "501", job_id], stack.a.cli_env())
    assert f"jobId: {job_id}" in plain.stdout

    again = tmp_path / "download.json"
    downloaded = client_cli(["download", "501", job_id, "-o", str(again), "--json"], stack.a.cli_env())
    assert downloaded.returncode == 0, downloaded.stderr
    assert json.loads(downloaded.stdout)["sha256"] == summary["sha256"]
    assert again.read_bytes() == (tmp_path / "again.json").read_bytes()

    # Cancelling a finished job: the server's refusal as one line, exit 1.
    cancelled = client_cli(["cancel", "501", job_id], stack.a.cli_env())
    assert cancelled.returncode == 1
    assert "already finished" in one_line_error(cancelled)
    missing = client_cli(["status", "501", "no-such-job"], stack.a.cli_env())
    assert missing.returncode == 1
    one_line_error(missing)
    no_wait = client_cli(["export", "501", "--no-wait"], stack.a.cli_env())
    assert no_wait.returncode == 0 and len(no_wait.stdout.strip()) == 36  # the full jobId


def test_python_api_sync_and_async(stack: Stack, tmp_path: Path) -> None:
    with api(stack.a) as client:
        sent = seed(client, 502)
        seen: list[ExportJob] = []
        result = client.export(502, tmp_path / "sync.json", on_progress=seen.append)
    assert seen[-1].status == "finished" and seen[-1].progress == 100
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest() == result.job.sha256
    assert file_events(result.path) == {k: v for k, v in sent.items() if v}

    async def run() -> Any:
        async with AsyncExamtrailClient(
            stack.a.url, stack.a.client_id, stack.a.api_key, poll_interval=0.2
        ) as et:
            job = await et.order_export(502)
            job = await et.wait(job)
            again = await et.get_job(502, job.job_id)
            return job, again, await et.download(again, tmp_path / "async.json")

    job, again, downloaded = asyncio.run(run())
    assert job.succeeded and again.sha256 == job.sha256
    assert downloaded.file_size == job.file_size
    assert file_events(downloaded.path) == file_events(result.path)


def test_token_refresh_and_download_resumed_after_a_drop(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "big.jsonl"
    write_jsonl(source, candidates=5, per_candidate=800, pad="x" * 300)  # ~1 MB export
    tokens: list[float] = []
    with api(stack.a) as client:

        def count(request: httpx.Request) -> None:
            if request.url.path.startswith("/api/authenticate/token"):
                tokens.append(time.monotonic())

        client._http.event_hooks["request"].append(count)
        report = client.ingest(503, source)
        assert report.ok and report.created == 4000
        job = client.order_export(503)
        time.sleep(TOKEN_TTL + 0.5)  # the token that ordered it has expired: polling must still work
        job = client.wait(job)
        assert job.succeeded and job.file_size is not None and job.file_size > 800_000
        before = len(tokens)
        # ~3.5 s to reach the drop: longer than the token and its link live.
        stack.proxy.rate = 250_000
        stack.proxy.drop_after = int(job.file_size * 0.7)
        stack.proxy.requests.clear()
        try:
            result = client.download(job, tmp_path / "big.json")
        finally:
            stack.proxy.rate = FAST
            stack.proxy.drop_after = None
    assert stack.proxy.dropped >= 1
    assert result.resumed >= 1
    assert result.sha256 == job.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    ranges = [r for r in stack.proxy.requests if "range: bytes=" in r.lower()]
    assert ranges, stack.proxy.requests
    offset = int(ranges[0].lower().split("range: bytes=")[1].split("-")[0])
    assert 0 < offset <= int(job.file_size * 0.7)
    assert len(tokens) > before, "the resumed download needed a fresh token for a fresh link"
    assert sum(1 for _ in read_export(result.path)) == 4000


def test_upload_file_appears_in_the_export(stack: Stack, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(b"evidence \x00\x01" * 5000)
    with api(stack.a) as client:
        seed(client, 505)
        uploaded = client.upload_file(505, 1, "e-1-2", evidence)
        assert uploaded["fileSize"] == evidence.stat().st_size
        assert uploaded["sha256"] == hashlib.sha256(evidence.read_bytes()).hexdigest()
        from_bytes = client.upload_file(
            505, 2, "e-2-0", b"note", file_name="note.txt", content_type="text/plain"
        )
        assert from_bytes["fileName"] == "note.txt"
        result = client.export(505, tmp_path / "with-files.json")
    files = {e["eventId"]: e["attachedFiles"] for _, e in read_export(result.path) if e["attachedFiles"]}
    assert sorted(files) == ["e-1-2", "e-2-0"]
    (attachment,) = files["e-1-2"]
    assert attachment["fileName"] == "evidence.bin"
    assert httpx.get(attachment["presignedUrl"], timeout=30).content == evidence.read_bytes()
    assert result.job.attachment_links_expire == result.job.raw["attachmentLinksExpire"] is not None


def _cut_after_first_chunk(request: httpx.Request) -> bool:
    return request.method == "PUT" and "/files/" in request.url.path


def _first_chunk_then_reset(chunks: Any) -> Any:
    for chunk in chunks:
        yield chunk
        raise httpx.WriteError("connection reset by peer")


class DropFirstUpload(httpx.BaseTransport):
    """The real transport, except that the first file upload's connection drops once the
    server has received the body's first chunk."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if _cut_after_first_chunk(request) and not self.dropped:
            self.dropped += 1
            cut = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=_first_chunk_then_reset(request.stream),
            )
            return self.real.handle_request(cut)
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


class AsyncDropFirstUpload(httpx.AsyncBaseTransport):
    """:class:`DropFirstUpload` for the async client."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if _cut_after_first_chunk(request) and not self.dropped:
            self.dropped += 1
            stream: Any = request.stream

            async def first_chunk_then_reset() -> Any:
                async for chunk in stream:
                    yield chunk
                    raise httpx.WriteError("connection reset by peer")

            cut = httpx.Request(
                request.method, request.url, headers=request.headers, content=first_chunk_then_reset()
            )
            return await self.real.handle_async_request(cut)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


def _stale_token(client: ExamtrailClient | AsyncExamtrailClient) -> None:
    """A token the client believes fresh but the server refuses: the next call gets a 401."""
    client._token.value, client._token.renew_at = "not-a-token", time.monotonic() + 3600


def test_upload_resends_the_whole_file_after_a_drop_and_after_a_401(stack: Stack, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(bytes(range(256)) * 1024)  # 256 KiB: several chunks
    digest = hashlib.sha256(evidence.read_bytes()).hexdigest()
    size = evidence.stat().st_size
    transport = DropFirstUpload()
    with ExamtrailClient(stack.a.url, stack.a.client_id, stack.a.api_key, transport=transport) as client:
        seed(client, 506)
        dropped = client.upload_file(506, 1, "e-1-0", evidence, file_name="dropped.bin")
        assert transport.dropped == 1
        _stale_token(client)
        refused_once = client.upload_file(506, 1, "e-1-1", evidence, file_name="after-401.bin")
        with evidence.open("rb") as stream:
            _stale_token(client)
            from_stream = client.upload_file(506, 2, "e-2-0", stream, file_name="stream.bin")
        result = client.export(506, tmp_path / "files.json")
    for answer in (dropped, refused_once, from_stream):
        assert (answer["fileSize"], answer["sha256"]) == (size, digest), answer

    async def run() -> list[dict[str, Any]]:
        async_transport = AsyncDropFirstUpload()
        async with AsyncExamtrailClient(
            stack.a.url, stack.a.client_id, stack.a.api_key, transport=async_transport
        ) as et:
            answers = [await et.upload_file(506, 2, "e-2-1", evidence, file_name="async-dropped.bin")]
            assert async_transport.dropped == 1
            _stale_token(et)
            answers.append(await et.upload_file(506, 2, "e-2-2", evidence, file_name="async-401.bin"))
            return answers

    for answer in asyncio.run(run()):
        assert (answer["fileSize"], answer["sha256"]) == (size, digest), answer
    stored = [f for _, e in read_export(result.path) for f in e["attachedFiles"]]
    assert sorted(f["fileName"] for f in stored) == ["after-401.bin", "dropped.bin", "stream.bin"]
    for attachment in stored:
        assert httpx.get(attachment["presignedUrl"], timeout=30).content == evidence.read_bytes()


def test_file_names_and_event_ids_are_sent_as_one_path_segment(stack: Stack, tmp_path: Path) -> None:
    names = ["photo #1.jpg", "what?.txt", "100%.txt", "a%2Fb.txt", "été & co;=+.txt"]
    with api(stack.a) as client:
        seed(client, 507)
        client.ingest_events(507, 3, [{**event(3, 0), "eventId": "ev:1.a_b-c"}])
        answers = [client.upload_file(507, 3, "ev:1.a_b-c", name.encode(), file_name=name) for name in names]
        result = client.export(507, tmp_path / "names.json")
    assert [answer["fileName"] for answer in answers] == names
    stored = {f["fileName"]: f for _, e in read_export(result.path) for f in e["attachedFiles"]}
    assert sorted(stored) == sorted(names)
    for name in names:
        assert httpx.get(stored[name]["presignedUrl"], timeout=30).content == name.encode()


def test_job_list_pages_within_the_servers_cap(stack: Stack) -> None:
    with api(stack.a) as client:
        seed(client, 508)
        # Three distinct jobs (the same export ordered again may be the same job).
        ordered = [client.wait(client.order_export(508, format=f)).job_id for f in ("json", "jsonl", "csv")]
        assert len(set(ordered)) == 3
        assert {job.job_id for job in client.list_jobs(508, limit=500)} == set(ordered)
        assert len(client.list_jobs(508, limit=2)) == 2
    listed = client_cli(["jobs", "508", "--limit", "500", "--json"], stack.a.cli_env())
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    zero = client_cli(["jobs", "508", "--limit", "0"], stack.a.cli_env())
    assert zero.returncode == 2 and "--limit" in zero.stderr


def corrupt_one_byte(stack: Stack, request: pytest.FixtureRequest, job_id: str) -> None:
    """Flips one bit of the stored export file, in the local store or in the S3 bucket."""
    if S3:
        s3 = request.getfixturevalue("seaweed").client()
        bucket = stack.a.env["EXAMTRAIL_S3_BUCKET"]
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        (key,) = [item["Key"] for item in listed if job_id in item["Key"]]
        data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0x01
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
        return
    data_dir = Path(stack.a.env["EXAMTRAIL_DATA_DIR"])
    (stored,) = [p for p in data_dir.rglob("*") if job_id in str(p) and p.is_file()]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))


def test_corrupted_byte_exits_4(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with api(stack.a) as client:
        seed(client, 504)
        job = client.wait(client.order_export(504))
    corrupt_one_byte(stack, request, job.job_id)
    out = tmp_path / "bad.json"
    result = client_cli(["download", "504", job.job_id, "-o", str(out)], stack.a.cli_env())
    assert result.returncode == 4, result.stderr
    assert "sha-256" in one_line_error(result).lower()
    assert not out.exists() and not Path(str(out) + ".part").exists()
    debug = client_cli(["download", "504", job.job_id, "-o", str(out), "--debug"], stack.a.cli_env())
    assert debug.returncode == 4 and "Traceback" in debug.stderr


def test_wrong_key_exits_3_unreachable_exits_5_usage_exits_2(stack: Stack, tmp_path: Path) -> None:
    wrong = client_cli(
        ["export", "501", "-o", str(tmp_path / "x")], stack.a.cli_env(EXAMTRAIL_API_KEY="etk_wrong")
    )
    assert wrong.returncode == 3
    assert "authentication failed" in one_line_error(wrong)
    down = client_cli(
        ["export", "501", "-o", str(tmp_path / "x"), "--url", f"http://127.0.0.1:{free_port()}"],
        stack.a.cli_env(),
    )
    assert down.returncode == 5
    assert "cannot reach" in one_line_error(down)
    usage = client_cli(["export", "501", "-o", str(tmp_path / "x")], {"EXAMTRAIL_URL": stack.a.url})
    assert usage.returncode == 2 and "--client-id" in usage.stderr
    no_output = client_cli(["export", "501"], stack.a.cli_env())
    assert no_output.returncode == 2


def test_ingest_100k_events_with_bad_lines_and_rerun(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    assert write_jsonl(source, candidates=20, per_candidate=5000) == 100_000
    lines = source.read_text().splitlines()
    lines[9] = '{"candidateUserId": 1000, "candidateId": "C-0", "event": '  # line 10: broken JSON
    no_zone = json.loads(lines[50_000])
    no_zone["timeStamp"] = "2026-06-01T09:00:00"
    lines[50_000] = json.dumps(no_zone)  # line 50001: the server refuses it
    orphan = json.loads(lines[77_776])
    del orphan["candidateUserId"]
    lines[77_776] = json.dumps(orphan)  # line 77777: no candidate
    extra = json.loads(lines[99_998])
    extra["colour"] = "red"
    lines[99_998] = json.dumps(extra)  # line 99999: unknown field
    source.write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    result = client_cli(
        ["ingest", "601", str(source), "--batch-size", "10000"], stack.a.cli_env(), timeout=300
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in report] == [
        "line 10",
        f"line 50001 (eventId {no_zone['eventId']})",
        f"line 77777 (eventId {orphan['eventId']})",
        f"line 99999 (eventId {extra['eventId']})",
    ], report
    assert "not valid JSON" in report[0]
    assert "timeStamp" in report[1] and "timezone" in report[1].lower()
    assert "candidateUserId" in report[2]
    assert "colour" in report[3]
    assert "read 100000 events, created 99996, already there 0, rejected 4; 20 candidates" in result.stdout
    with api(stack.a) as client:
        described = client.request("GET", "/v1/test/601").json()
    assert described["events"] == 99_996 and described["candidates"] == 20
    print(f"100k ingest: {elapsed:.1f}s")


def test_export_ingested_into_a_second_server_reproduces_the_content(stack: Stack, tmp_path: Path) -> None:
    with api(stack.a) as client:
        seed(client, 701)
    first = tmp_path / "a.json"
    assert client_cli(["export", "701", "-o", str(first)], stack.a.cli_env()).returncode == 0
    ingested = client_cli(["ingest", "701", str(first)], stack.b.cli_env())
    assert ingested.returncode == 0, ingested.stderr
    assert "created 8" in ingested.stdout and "3 candidates" in ingested.stdout
    # Safe to re-run: nothing new.
    rerun = client_cli(["ingest", "701", str(first), "--json"], stack.b.cli_env())
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout) | {"rejected": []} == {
        "testId": 701,
        "read": 8,
        "created": 0,
        "duplicates": 8,
        "candidates": 3,
        "rejected": [],
    }
    second = tmp_path / "b.json"
    exported = client_cli(["export", "701", "-o", str(second)], stack.b.cli_env())
    assert exported.returncode == 0, exported.stderr
    a, b = json.loads(first.read_bytes()), json.loads(second.read_bytes())
    assert a.pop("created") and b.pop("created")
    assert a == b
    # Byte for byte apart from the creation time.
    assert first.read_bytes().split(b'"candidates"', 1)[1] == second.read_bytes().split(b'"candidates"', 1)[1]


def test_export_options_job_list_and_a_bad_option(stack: Stack, tmp_path: Path) -> None:
    with api(stack.a) as client:
        sent = seed(client, 520)
    out = tmp_path / "one.jsonl.gz"
    args = ["export", "520", "-o", str(out), "--user-id", "1", "--format", "jsonl", "--gzip", "--json"]
    result = client_cli(args, stack.a.cli_env())
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["jobId"]
    lines = [json.loads(line) for line in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert {line["candidateUserId"] for line in lines} == {1}
    assert len(lines) == len(sent[1])

    flagged = tmp_path / "flagged.json"
    assert client_cli(["export", "520", "-o", str(flagged), "--flagged"], stack.a.cli_env()).returncode == 0
    flags = [e for c in json.loads(flagged.read_text())["candidates"] for e in c["events"]]
    assert len(flags) == 1 and flags[0].get("flaggingInfo")

    listed = client_cli(["jobs", "520", "--json"], stack.a.cli_env())
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert job_id in {job["jobId"] for job in jobs}
    assert len(jobs) == 2

    bad = client_cli(["export", "520", "-o", str(tmp_path / "x"), "--from", "yesterday"], stack.a.cli_env())
    assert bad.returncode in (1, 2)
    assert "from" in one_line_error(bad)


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed")
    return found


@pytest.mark.skipif(PRODUCTION, reason="the wheel is tested once, in the embedded pass")
def test_wheel_installs_into_a_fresh_environment_and_runs(stack: Stack, tmp_path: Path) -> None:
    uv = _uv()
    built = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(REPO / "clients" / "python")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("examtrail_client-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    installed = subprocess.run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    # Only the light dependencies, none of the server's.
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for heavy in ("fastapi", "sqlalchemy", "boto3", "dramatiq", "pydantic"):
        assert heavy not in listed, listed
    with api(stack.a) as client:
        seed(client, 801)
    out = tmp_path / "wheel.json"
    env = {**stack.a.cli_env(), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [str(venv / "bin" / "examtrail-client"), "export", "801", "-o", str(out), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
