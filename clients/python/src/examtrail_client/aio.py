"""The asynchronous client (httpx.AsyncClient): the same calls as :class:`ExamtrailClient`, awaited."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from examtrail_client import _common as c
from examtrail_client.client import (
    BytesCallback,
    IngestCallback,
    ProgressCallback,
    _candidate_json,
    _counting,
    _finished,
    _verify,
)
from examtrail_client.errors import AuthenticationError, ExamtrailError, NotFoundError, VerificationError
from examtrail_client.files import SourceEvent, iter_source
from examtrail_client.models import Candidate, DownloadResult, ExportJob, IngestProgress, IngestReport


class AsyncExamtrailClient:
    """The async twin of :class:`examtrail_client.ExamtrailClient` (same methods, awaited).

    >>> async with AsyncExamtrailClient(url, client_id, api_key) as et:  # doctest: +SKIP
    ...     result = await et.export(1001, "events.json")
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.api_key = api_key
        self.poll_interval = poll_interval
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)
        self._token = c.TokenState()
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncExamtrailClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        body = kwargs.pop("content", None)
        replayable = c.replayable(body)
        for delay in (*c.RETRY_DELAYS, None):
            content = body.acontent() if isinstance(body, c.UploadBody) else body
            try:
                response = await self._http.request(method, path, content=content, **kwargs)
            except httpx.TransportError as exc:
                # A stream half sent cannot be sent again: never resend its rest as the body.
                if delay is None or not replayable or isinstance(exc, httpx.UnsupportedProtocol):
                    raise c.unreachable(exc, self.url) from exc
            else:
                if delay is None or not replayable or response.status_code not in c.RETRY_STATUSES:
                    return response
                delay = c.retry_delay(response, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def authenticate(self) -> str:
        """Gets a new access token (``AuthenticationError`` if the id or key is refused)."""
        path, params, headers = c.token_request(self.client_id, self.api_key)
        response = await self._send("POST", path, params=params, headers=headers, content=b"")
        if response.status_code in (400, 401, 403):
            body = c.json_or_none(response)
            code = body.get("error", "invalid_grant") if isinstance(body, dict) else "invalid_grant"
            raise AuthenticationError(
                "the client id or API key was refused", code=str(code), status=response.status_code
            )
        c.raise_for_error(response)
        return self._token.set(c.json_or_none(response))

    async def _token_value(self) -> str:
        async with self._lock:
            if not self._token.fresh():
                return await self.authenticate()
            assert self._token.value is not None
            return self._token.value

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated API call; raises the typed error of an error answer."""
        headers = dict(kwargs.pop("headers", None) or {})
        retry = c.replayable(kwargs.get("content"))
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {await self._token_value()}"
            response = await self._send(method, path, headers=headers, **kwargs)
            if attempt == 0 and retry and c.token_expired(response):
                self._token.clear()
                continue
            c.raise_for_error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def order_export(self, test_id: int, **options: Any) -> ExportJob:
        """Orders an export (see :meth:`ExamtrailClient.order_export` for the options)."""
        response = await self.request("POST", c.test_path(test_id, "events"), params=c.export_params(options))
        return ExportJob.from_api(response.json())

    async def get_job(self, test_id: int, job_id: str) -> ExportJob:
        """The job's status; once finished it holds a fresh ``download_url``."""
        response = await self.request("GET", c.test_path(test_id, "events"), params={"jobId": job_id})
        return ExportJob.from_api(response.json())

    async def cancel(self, test_id: int, job_id: str) -> ExportJob:
        """Cancels a queued or running export (``ConflictError`` if it already ended)."""
        response = await self.request("DELETE", c.test_path(test_id, "events"), params={"jobId": job_id})
        return ExportJob.from_api(response.json())

    async def list_jobs(
        self, test_id: int, *, status: str | None = None, limit: int | None = None
    ) -> list[ExportJob]:
        """Every export job of the test (or the newest ``limit``), newest first (servers that list jobs)."""
        jobs: list[ExportJob] = []
        cursor: str | None = None
        while True:
            params = c.jobs_query(status, limit, cursor, len(jobs))
            body = (await self.request("GET", c.test_path(test_id, "events", "jobs"), params=params)).json()
            items = (body.get("jobs") or body.get("items") or []) if isinstance(body, dict) else body
            jobs.extend(ExportJob.from_api(item) for item in items)
            cursor = body.get("nextCursor") if isinstance(body, dict) else None
            if not cursor or (limit and len(jobs) >= limit):
                return jobs[:limit]

    async def wait(
        self, job: ExportJob, on_progress: ProgressCallback | None = None, *, timeout: float | None = None
    ) -> ExportJob:
        """Polls until the job ends and returns its last status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(0.1, self.poll_interval)
        while True:
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.job_id} still {job.status} after {timeout}s")
            await asyncio.sleep(interval)
            interval = min(self.poll_interval, interval * 1.5)
            job = await self.get_job(job.test_id, job.job_id)

    async def download(
        self, job: ExportJob, path: str | Path, *, on_bytes: BytesCallback | None = None
    ) -> DownloadResult:
        """Downloads and verifies a finished job's file, resuming with ``Range`` after a drop."""
        if not job.download_url:
            job = await self.get_job(job.test_id, job.job_id)
        job = _finished(job)
        target = Path(path)
        part = target.with_name(target.name + ".part")
        total = int(job.file_size or 0)
        digest = hashlib.sha256()
        offset = resumed = failures = 0
        part.write_bytes(b"")
        while True:
            if c.link_is_stale(job.download_url_expires):
                job = _finished(await self.get_job(job.test_id, job.job_id))
            assert job.download_url is not None
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                async with self._http.stream("GET", job.download_url, headers=headers) as response:
                    if response.status_code in (401, 403):
                        failures += 1
                        if failures > 3:
                            await response.aread()
                            c.raise_for_error(response)
                        self._token.clear()  # a new token, so a new link that lives as long
                        job = _finished(await self.get_job(job.test_id, job.job_id))
                        continue
                    if response.status_code not in (200, 206):
                        await response.aread()
                        c.raise_for_error(response)
                    if offset and response.status_code == 200:
                        offset, digest = 0, hashlib.sha256()
                        part.write_bytes(b"")
                    with part.open("ab") as out:
                        async for chunk in response.aiter_bytes(1 << 16):
                            out.write(chunk)
                            digest.update(chunk)
                            offset += len(chunk)
                            failures = 0
                            if on_bytes is not None:
                                on_bytes(offset, total)
            except httpx.TransportError as exc:
                failures += 1
                if failures > len(c.RETRY_DELAYS):
                    raise c.unreachable(exc, job.download_url or self.url) from exc
                resumed += 1
                await asyncio.sleep(c.RETRY_DELAYS[failures - 1])
                continue
            if offset >= total:
                break
            failures += 1
            if failures > len(c.RETRY_DELAYS):
                raise VerificationError(
                    f"the download stopped at {offset} of {total} bytes", code="truncated"
                )
            resumed += 1
        return _verify(job, part, target, offset, digest.hexdigest(), resumed)

    async def export(
        self,
        test_id: int,
        path: str | Path,
        *,
        on_progress: ProgressCallback | None = None,
        on_bytes: BytesCallback | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> DownloadResult:
        """Orders, waits for, downloads and verifies an export (``ExportFailedError`` if it fails)."""
        job = await self.wait(await self.order_export(test_id, **options), on_progress, timeout=timeout)
        return await self.download(job, path, on_bytes=on_bytes)

    async def put_test(self, test_id: int, title: str) -> dict[str, Any]:
        """Creates or renames a test (the title is required, not blank)."""
        body: dict[str, Any] = (await self.request("PUT", c.test_path(test_id), json={"title": title})).json()
        return body

    async def ensure_test(self, test_id: int, title: str | None = None) -> None:
        """Creates the test when it does not exist."""
        try:
            await self.request("GET", c.test_path(test_id))
        except NotFoundError:
            await self.put_test(test_id, title or f"Test {test_id}")

    async def put_candidates(
        self, test_id: int, candidates: Iterable[Candidate | Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Adds or updates candidates."""
        body = [_candidate_json(item) for item in candidates]
        result: dict[str, Any] = (
            await self.request("PUT", c.test_path(test_id, "candidates"), json=body)
        ).json()
        return result

    async def ingest_events(self, test_id: int, user_id: int, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Records a batch of events on a candidate (all or nothing; idempotent on ``eventId``)."""
        response = await self.request(
            "POST", c.test_path(test_id, "candidates", user_id, "events"), json=events
        )
        result: dict[str, Any] = response.json()
        return result

    async def upload_file(
        self,
        test_id: int,
        user_id: int,
        event_id: str,
        file: str | Path | bytes | IO[bytes],
        *,
        file_name: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Attaches an evidence file (a path, bytes or a binary stream) to an event; every
        attempt sends it whole and the stored ``sha256`` is checked (see the sync client)."""
        path, body, headers = c.upload_request(test_id, user_id, event_id, file, file_name, content_type)
        with body:
            result: dict[str, Any] = (await self.request("PUT", path, content=body, headers=headers)).json()
            body.check(result)
        return result

    async def ingest(
        self,
        test_id: int,
        source: str | Path | Iterable[SourceEvent],
        *,
        batch_size: int = c.DEFAULT_BATCH_SIZE,
        title: str | None = None,
        on_progress: IngestCallback | None = None,
    ) -> IngestReport:
        """Streams events from a JSON Lines or seed-format file into the test (see the sync client)."""
        items = iter_source(source) if isinstance(source, str | Path) else source
        report = IngestReport(test_id)
        progress = IngestProgress()
        await self.ensure_test(test_id, title)
        for step in c.plan_ingest(_counting(items, progress), batch_size):
            if isinstance(step, c.Reject):
                report.rejected.append(step.rejected)
            elif isinstance(step, c.RegisterCandidates):
                await self.put_candidates(test_id, step.candidates)
                report.candidates += len(step.candidates)
            else:
                pending = step.items
                while pending:
                    try:
                        result = await self.ingest_events(
                            test_id, step.user_id, [i.event for i in pending if i.event]
                        )
                    except ExamtrailError as exc:
                        if exc.status not in (409, 422):
                            raise
                        rejected, pending = c.split_rejected(pending, exc)
                        report.rejected.extend(rejected)
                        continue
                    report.created += int(result.get("created", 0))
                    report.duplicates += int(result.get("duplicates", 0))
                    progress.sent += len(pending)
                    pending = []
            progress.created, progress.duplicates = report.created, report.duplicates
            progress.rejected, progress.candidates = len(report.rejected), report.candidates
            if on_progress is not None:
                on_progress(progress)
        report.read = progress.read
        report.rejected.sort(key=lambda r: r.line)
        return report
