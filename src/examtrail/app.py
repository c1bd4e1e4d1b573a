"""The FastAPI application."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from examtrail import __version__
from examtrail.audit.api import build_router as audit_router
from examtrail.auth.api import router as auth_router
from examtrail.auth.deps import require_scope
from examtrail.core import metrics
from examtrail.core.access import RequestMiddleware
from examtrail.core.batching import GroupCommitWriter, writer_threads
from examtrail.core.body import BodyLimit
from examtrail.core.db import build_async_engine, build_pg_pool, utcnow
from examtrail.core.errors import Unauthorized, install_error_handlers
from examtrail.core.logging import install_redaction
from examtrail.core.methods import HeadAsGet
from examtrail.core.query import single_query_values
from examtrail.core.responses import JSONResponse
from examtrail.core.settings import Settings, get_settings
from examtrail.core.slashes import install_relative_slash_redirects
from examtrail.exports import service as exports_service
from examtrail.exports.api import router as exports_router
from examtrail.exports.api import schema_router
from examtrail.exports.downloads import download_auditor
from examtrail.ingest.api import list_router as tests_router
from examtrail.ingest.api import router as ingest_router
from examtrail.lifecycle.api import router as lifecycle_router
from examtrail.openapi import install_docs, install_openapi, operation_id
from examtrail.runtime import Runtime
from examtrail.signing import service as signing
from examtrail.signing.api import router as signing_router
from examtrail.storage.api import router as storage_router
from examtrail.tasks import background_worker, build_runtime, sweep_temporaries
from examtrail.ui import api as ui
from examtrail.webhooks import service as webhooks_service
from examtrail.webhooks.api import router as webhooks_router

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]] = Field(
        description="`database`, `objectStore`, `broker`: each `ok` or `unavailable`"
    )


DESCRIPTION = """
Keeps every event registered on a candidate during an exam and exports them per test.

Compatible with Inspera's *Test events export API*: get a token, order an export of
`/v1/test/{testId}/events`, poll it with the `jobId`, download the JSON file through a
pre-signed URL that stays valid for the lifetime of the access token.
"""


def _ensure_signing_key(rt: Runtime) -> None:
    """The export signing key exists from the first start on (else the first export makes it)."""
    try:
        signing.current_key(rt.sessions, rt.settings)
    except Exception:
        log.warning("could not create the export signing key at start", exc_info=True)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime(settings)
        await run_in_threadpool(rt.store.ensure_ready)
        await run_in_threadpool(sweep_temporaries, rt)  # what a killed process left behind
        await run_in_threadpool(_ensure_signing_key, rt)
        app.state.runtime = rt
        # PostgreSQL: the async engine of the status and token calls, bound to this event loop.
        async_engine = build_async_engine(rt.settings)
        app.state.async_engine = async_engine
        # PostgreSQL: plain psycopg connections of the status call (the hottest polled path).
        pg_pool = build_pg_pool(rt.settings)
        app.state.pg_pool = pg_pool
        app.state.download_hook = download_auditor(rt)
        # Single events of this process go through one group-commit writer (ingest/api.py).
        ingest_writer = GroupCommitWriter(
            rt.sessions, threads=writer_threads(rt.engine), name="ingest-writer"
        )
        ingest_writer.start()
        app.state.ingest_writer = ingest_writer
        worker = background_worker(rt) if rt.embedded_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            # In-flight requests have been answered by now; what is queued is committed.
            await run_in_threadpool(ingest_writer.stop)
            if worker is not None:
                worker.stop()
            if async_engine is not None:
                await async_engine.dispose()
            if pg_pool is not None:
                await pg_pool.close()
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="Examtrail",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
        # A one-value query parameter given twice is a 422, not its last value (core.query).
        dependencies=[Depends(single_query_values)],
    )
    install_error_handlers(app)
    install_relative_slash_redirects(app)
    # HEAD on every GET route (core.methods), innermost: the access line and limits see a HEAD.
    app.add_middleware(HeadAsGet)
    # Every request body within its limit (core.body), inside the access line so a 413 is logged.
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    # Outermost, one layer: the request context, then the access line and metrics (core.access).
    app.add_middleware(RequestMiddleware)
    install_redaction()
    app.include_router(auth_router)
    app.include_router(tests_router)
    app.include_router(ingest_router)
    app.include_router(exports_router)
    app.include_router(lifecycle_router)
    app.include_router(schema_router)
    app.include_router(webhooks_router)
    app.include_router(storage_router)
    app.include_router(signing_router)
    app.include_router(audit_router(require_scope("audit")))
    ui.install(app, settings)

    install_openapi(app, settings)
    install_docs(app)

    @app.get("/healthz", tags=["health"], summary="The process is up", response_model=Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Database, object store and broker are reachable",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "One of them is unreachable"}},
    )
    def readyz() -> JSONResponse:
        rt: Runtime = app.state.runtime
        checks: dict[str, Any] = {}

        def probe(name: str, action: Any) -> None:
            try:
                action()
                checks[name] = "ok"
            except Exception as exc:
                log.warning("readiness check %s failed: %s", name, exc)
                checks[name] = "unavailable"

        def database() -> None:
            with rt.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        probe("database", database)
        probe("objectStore", rt.store.check)
        probe("broker", rt.queue.check)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    # Prometheus text, not part of the JSON API: left out of the OpenAPI document.
    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise Unauthorized("metrics need Authorization: Bearer <EXAMTRAIL_METRICS_TOKEN>")
        rt: Runtime = app.state.runtime
        body, content_type = metrics.render([metrics.CallbackCollector(lambda: database_metrics(rt))])
        return Response(body, media_type=content_type)

    return app


def database_metrics(runtime: Runtime) -> list[Any]:
    """Gauges read from the database at scrape time: the same from every process."""
    from prometheus_client.core import GaugeMetricFamily

    now = utcnow()
    with runtime.sessions() as session:
        jobs = exports_service.status_counts(session)
        oldest = exports_service.oldest_due_since(session, now)
        deliveries = webhooks_service.waiting_deliveries(session, now)
    by_status = GaugeMetricFamily(f"{metrics.PREFIX}_export_jobs", "Export jobs by status", labels=["status"])
    for status, count in sorted(jobs.items()):
        by_status.add_metric([status], count)
    age = GaugeMetricFamily(
        f"{metrics.PREFIX}_export_queue_oldest_age_seconds",
        "How long the longest-waiting due export job has waited for a worker (0: none waits)",
        value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
    waiting = GaugeMetricFamily(
        f"{metrics.PREFIX}_webhook_deliveries_due",
        "Webhook deliveries due now and not yet sent (pending past their attempt time)",
        value=deliveries,
    )
    return [by_status, age, waiting]
