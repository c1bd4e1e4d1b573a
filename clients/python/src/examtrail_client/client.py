"""The synchronous client (httpx)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from examtrail_client import _common as c
from examtrail_client.errors import (
    AuthenticationError,
    ExamtrailError,
    ExportFailedError,
    NotFoundError,
    VerificationError,
)
from examtrail_client.files import SourceEvent, iter_source
from examtrail_client.models import (
    Candidate,
    DownloadResult,
    ExportJob,
    IngestProgress,
    IngestReport,
)

ProgressCallback = Callable[[ExportJob], None]
BytesCallback = Callable[[int, int], None]
IngestCallback = Callable[[IngestProgress], None]


class ExamtrailClient:
    """A client of one Examtrail server for one API client (id and key).

    Tokens are obtained on first use and renewed before they expire (and once more on a
    401), so long waits and downloads keep working. Use it as a context manager or call
    :meth:`close`.

    >>> with ExamtrailClient("http://127.0.0.1:8000", "cli_…", "key_…") as et:  # doctest: +SKIP
    ...     result = et.export(1001, "events.json")
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.api_key = api_key
        self.poll_interval = poll_interval
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._token = c.TokenState()

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> ExamtrailClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on connection problems and on 429/502/503/504 (a restarting
        or busy server; after its ``Retry-After``, at most 30 s) when its body can be sent
        again (bytes, an :class:`~examtrail_client._common.UploadBody`);
        ServerUnreachableError when the connection keeps failing."""
        body = kwargs.pop("content", None)
        replayable = c.replayable(body)
        for delay in (*c.RETRY_DELAYS, None):
            content = body.content() if isinstance(body, c.UploadBody) else body
            try:
                response = self._http.request(method, path, content=content, **kwargs)
            except httpx.TransportError as exc:
                # A stream half sent cannot be sent again: never resend its rest as the body.
                if delay is None or not replayable or isinstance(exc, httpx.UnsupportedProtocol):
                    raise c.unreachable(exc, self.url) from exc
            else:
                if delay is None or not replayable or response.status_code not in c.RETRY_STATUSES:
                    return response
                delay = c.retry_delay(response, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def authenticate(self) -> str:
        """Gets a new access token (``AuthenticationError`` if the id or key is refused)."""
        path, params, headers = c.token_request(self.client_id, self.api_key)
        response = self._send("POST", path, params=params, headers=headers, content=b"")
        if response.status_code in (400, 401, 403):
            body = c.json_or_none(response)
            code = body.get("error", "invalid_grant") if isinstance(body, dict) else "invalid_grant"
            raise AuthenticationError(
                "the client id or API key was refused", code=str(code), status=response.status_code
            )
        c.raise_for_error(response)
        return self._token.set(c.json_or_none(response))

    def _token_value(self) -> str:
        if not self._token.fresh():
            return self.authenticate()
        assert self._token.value is not None
        return self._token.value

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated API call; raises the typed error of an error answer.

        A 401 is retried once with a new token, unless the body is a stream already consumed.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        retry = c.replayable(kwargs.get("content"))
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {self._token_value()}"
            response = self._send(method, path, headers=headers, **kwargs)
            if attempt == 0 and retry and c.token_expired(response):
                self._token.clear()
                continue
            c.raise_for_error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    # -- export jobs ----------------------------------------------------------------------

    def order_export(self, test_id: int, **options: Any) -> ExportJob:
        """Orders an export of the test (``POST /v1/test/{testId}/events``) and returns the job.

        Options (query parameters, for servers that support them): ``user_id``,
        ``candidate_id``, ``event``, ``severity_level`` (each a value or a list),
        ``flagged=True``, ``from_``, ``to`` (datetimes with zone or RFC 3339 strings),
        ``since`` (a previous job's ``next_since``), ``format`` (``json``, ``jsonl``, ``csv``)
        and ``compression`` (``gzip``) or ``gzip=True``; ``pseudonymize=True`` for a research
        export with pseudonyms instead of identities.
        """
        response = self.request("POST", c.test_path(test_id, "events"), params=c.export_params(options))
        return ExportJob.from_api(response.json())

    def get_job(self, test_id: int, job_id: str) -> ExportJob:
        """The job's status; once finished it holds a fresh ``download_url``."""
        response = self.request("GET", c.test_path(test_id, "events"), params={"jobId": job_id})
        return ExportJob.from_api(response.json())

    def cancel(self, test_id: int, job_id: str) -> ExportJob:
        """Cancels a queued or running export (``ConflictError`` if it already ended)."""
        response = self.request("DELETE", c.test_path(test_id, "events"), params={"jobId": job_id})
        return ExportJob.from_api(response.json())

    def list_jobs(
        self, test_id: int, *, status: str | None = None, limit: int | None = None
    ) -> list[ExportJob]:
        """Every export job of the test (or the newest ``limit``), newest first (servers that
        list jobs; follows ``nextCursor``, pages of at most 200)."""
        jobs: list[ExportJob] = []
        cursor: str | None = None
        while True:
            params = c.jobs_query(status, limit, cursor, len(jobs))
            body = self.request("GET", c.test_path(test_id, "events", "jobs"), params=params).json()
            items = (body.get("jobs") or body.get("items") or []) if isinstance(body, dict) else body
            jobs.extend(ExportJob.from_api(item) for item in items)
            cursor = body.get("nextCursor") if isinstance(body, dict) else None
            if not cursor or (limit and len(jobs) >= limit):
                return jobs[:limit]

    def wait(
        self,
        job: ExportJob,
        on_progress: ProgressCallback | None = None,
        *,
        timeout: float | None = None,
    ) -> ExportJob:
        """Polls until the job ends and returns its last status (whatever it is).

        ``on_progress(job)`` is called with every status read. ``TimeoutError`` after
        ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(0.1, self.poll_interval)
        while True:
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.job_id} still {job.status} after {timeout}s")
            time.sleep(interval)
            interval = min(self.poll_interval, interval * 1.5)
            job = self.get_job(job.test_id, job.job_id)

    def download(
        self, job: ExportJob, path: str | Path, *, on_bytes: BytesCallback | None = None
    ) -> DownloadResult:
        """Downloads a finished job's file to ``path`` and checks its size and SHA-256.

        A dropped connection is resumed with ``Range``; an expired link is replaced by a
        fresh one. The file is written to ``path + ".part"`` and renamed once verified;
        ``VerificationError`` if it does not match.
        """
        job = _finished(job) if job.download_url else _finished(self.get_job(job.test_id, job.job_id))
        target = Path(path)
        part = target.with_name(target.name + ".part")
        total = int(job.file_size or 0)
        digest = hashlib.sha256()
        offset = 0
        resumed = 0
        failures = 0
        part.write_bytes(b"")
        while True:
            if c.link_is_stale(job.download_url_expires):
                job = _finished(self.get_job(job.test_id, job.job_id))
            assert job.download_url is not None
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                with self._http.stream("GET", job.download_url, headers=headers) as response:
                    if response.status_code in (401, 403):
                        failures += 1
                        if failures > 3:
                            response.read()
                            c.raise_for_error(response)
                        self._token.clear()  # a new token, so a new link that lives as long
                        job = _finished(self.get_job(job.test_id, job.job_id))
                        continue
                    if response.status_code not in (200, 206):
                        response.read()
                        c.raise_for_error(response)
                    if offset and response.status_code == 200:
                        offset, digest = 0, hashlib.sha256()  # the server ignored Range: start over
                        part.write_bytes(b"")
                    with part.open("ab") as out:
                        for chunk in response.iter_bytes(1 << 16):
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
                time.sleep(c.RETRY_DELAYS[failures - 1])
                continue
            if offset >= total:
                break
            failures += 1  # the body ended early without an error: ask for the rest
            if failures > len(c.RETRY_DELAYS):
                raise VerificationError(
                    f"the download stopped at {offset} of {total} bytes", code="truncated"
                )
            resumed += 1
        return _verify(job, part, target, offset, digest.hexdigest(), resumed)

    def export(
        self,
        test_id: int,
        path: str | Path,
        *,
        on_progress: ProgressCallback | None = None,
        on_bytes: BytesCallback | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> DownloadResult:
        """Orders, waits for, downloads and verifies an export: the whole flow in one call.

        ``ExportFailedError`` if the export fails or is cancelled.
        """
        job = self.wait(self.order_export(test_id, **options), on_progress, timeout=timeout)
        return self.download(job, path, on_bytes=on_bytes)

    # -- ingestion ------------------------------------------------------------------------

    def put_test(self, test_id: int, title: str) -> dict[str, Any]:
        """Creates or renames a test (``PUT /v1/test/{testId}``; the title is required, not blank)."""
        body: dict[str, Any] = self.request("PUT", c.test_path(test_id), json={"title": title}).json()
        return body

    def ensure_test(self, test_id: int, title: str | None = None) -> None:
        """Creates the test when it does not exist (an existing test's title is left alone)."""
        try:
            self.request("GET", c.test_path(test_id))
        except NotFoundError:
            self.put_test(test_id, title or f"Test {test_id}")

    def put_candidates(
        self, test_id: int, candidates: Iterable[Candidate | Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Adds or updates candidates (``userId`` and ``candidateId``)."""
        body = [_candidate_json(item) for item in candidates]
        result: dict[str, Any] = self.request("PUT", c.test_path(test_id, "candidates"), json=body).json()
        return result

    def ingest_events(self, test_id: int, user_id: int, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Records a batch of events on a candidate (all or nothing; idempotent on ``eventId``)."""
        response = self.request("POST", c.test_path(test_id, "candidates", user_id, "events"), json=events)
        result: dict[str, Any] = response.json()
        return result

    def upload_file(
        self,
        test_id: int,
        user_id: int,
        event_id: str,
        file: str | Path | bytes | IO[bytes],
        *,
        file_name: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Attaches an evidence file (a path, bytes or a binary stream) to an event.

        Returns ``{"fileName", "contentItemId", "fileSize", "sha256"}``. Every attempt (after
        a dropped connection, a 503 or a 401) sends the whole file again: a path is reopened,
        a stream rewound (one that cannot seek is first copied to a temporary file).
        ``VerificationError`` (``upload_mismatch``) if the server's ``fileSize`` or ``sha256``
        differ from what was sent.
        """
        path, body, headers = c.upload_request(test_id, user_id, event_id, file, file_name, content_type)
        with body:
            result: dict[str, Any] = self.request("PUT", path, content=body, headers=headers).json()
            body.check(result)
        return result

    def ingest(
        self,
        test_id: int,
        source: str | Path | Iterable[SourceEvent],
        *,
        batch_size: int = c.DEFAULT_BATCH_SIZE,
        title: str | None = None,
        on_progress: IngestCallback | None = None,
    ) -> IngestReport:
        """Streams events from a JSON Lines or seed-format file (or ``SourceEvent``s) into the test.

        Creates the test if needed, registers candidates, sends batches per candidate and
        sets aside every input the server refuses (with its line number and the server's
        message) while sending the rest. Safe to re-run: events are idempotent on ``eventId``.
        """
        items = iter_source(source) if isinstance(source, str | Path) else source
        report = IngestReport(test_id)
        progress = IngestProgress()
        self.ensure_test(test_id, title)
        for step in c.plan_ingest(_counting(items, progress), batch_size):
            if isinstance(step, c.Reject):
                report.rejected.append(step.rejected)
            elif isinstance(step, c.RegisterCandidates):
                self.put_candidates(test_id, step.candidates)
                report.candidates += len(step.candidates)
            else:
                pending = step.items
                while pending:
                    try:
                        result = self.ingest_events(
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
            report.read = progress.read
            progress.created, progress.duplicates = report.created, report.duplicates
            progress.rejected, progress.candidates = len(report.rejected), report.candidates
            if on_progress is not None:
                on_progress(progress)
        report.read = progress.read
        report.rejected.sort(key=lambda r: r.line)
        return report


def _counting(items: Iterable[SourceEvent], progress: IngestProgress) -> Iterable[SourceEvent]:
    for item in items:
        if item.event is not None or item.problem is not None:
            progress.read += 1
        yield item


def _candidate_json(item: Candidate | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(item, Candidate):
        return {"userId": item.user_id, "candidateId": item.candidate_id}
    return {"userId": item["userId"], "candidateId": item["candidateId"]}


def _finished(job: ExportJob) -> ExportJob:
    if job.status in ("failed", "cancelled", "expired"):
        error = job.error or {}
        message = error.get("message") or f"the export ended {job.status}"
        raise ExportFailedError(
            f"export {job.job_id} {job.status}: {message}", job=job, code=str(error.get("code") or job.status)
        )
    if job.status != "finished" or not job.download_url:
        raise ExamtrailError(f"export {job.job_id} is {job.status}, not finished yet", code="not_finished")
    return job


def _verify(job: ExportJob, part: Path, target: Path, size: int, sha256: str, resumed: int) -> DownloadResult:
    if job.file_size is not None and size != job.file_size:
        part.unlink(missing_ok=True)
        raise VerificationError(
            f"downloaded {size} bytes, the server published {job.file_size}", code="size_mismatch"
        )
    if job.sha256 and sha256 != job.sha256.lower():
        part.unlink(missing_ok=True)
        raise VerificationError(
            f"SHA-256 {sha256} does not match the published {job.sha256}", code="sha256_mismatch"
        )
    part.replace(target)
    return DownloadResult(job=job, path=target, file_size=size, sha256=sha256, resumed=resumed)
