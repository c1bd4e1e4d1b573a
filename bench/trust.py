"""What the audit log and export signatures cost, as shares of the throughput measured in
the same run (issue #14: at most 5% each).

Both are fixed costs, not per event: one audit insert per request (a batch of events, an
export order, a status call that hands out a link) and one Ed25519 signature per finished
export. Each is timed on the benchmark's own PostgreSQL database and set against the rate
the same run measured: the share is the fraction of the work's wall time they would take if
they ran serially on its critical path (an upper bound: they overlap with other requests).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from examtrail.audit import actions
from examtrail.audit.service import record
from examtrail.auth.models import Tenant
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.settings import Settings
from examtrail.signing import service as signing

SAMPLES = 200


def measure_costs(
    settings: Settings, tenant_name: str, ingestion: dict[str, Any], export_s: float, status_per_s: float
) -> dict[str, Any]:
    engine = build_engine(settings)
    sessions = build_session_factory(engine)
    try:
        with sessions() as session:
            tenant_id = session.query(Tenant.id).filter(Tenant.name == tenant_name).scalar()
        assert tenant_id is not None, tenant_name
        # One entry per statement inside one transaction: the insert's own cost, as it rides
        # on the action's transaction (whose commit is paid anyway).
        with transaction(sessions) as session:
            started = time.perf_counter()
            for n in range(SAMPLES):
                record(
                    session,
                    tenant_id=tenant_id,
                    client_id="bench",
                    action=actions.EVENTS_INGESTED,
                    object_type=actions.OBJECT_TEST,
                    object_id=n,
                    test_id=n,
                    details={"received": 1000, "created": 1000, "duplicates": 0},
                )
            entry_s = (time.perf_counter() - started) / SAMPLES
        claims: signing.ExportClaims = {
            "jobId": "00000000-0000-0000-0000-000000000000",
            "testId": 1,
            "tenant": tenant_id,
            "created": "2026-01-01T00:00:00.000Z",
            "options": {"format": "json"},
            "fileSize": 204_459_786,
            "sha256": "0" * 64,
        }
        sign_runs = []
        for _ in range(20):
            started = time.perf_counter()
            signing.signer(sessions, settings).sign(claims)  # load, open and sign, as a publish does
            sign_runs.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    sign_s = statistics.median(sign_runs)
    batch_rate = ingestion["api"]["events_per_s"] / ingestion["batch_events"]
    small_rate = ingestion["api_small_batches"]["events_per_s"] / 500
    return {
        "audit_entry_ms": entry_s * 1000,
        "sign_ms": sign_s * 1000,
        "audit_share_batches": entry_s * batch_rate,
        "audit_share_small_batches": entry_s * small_rate,
        # Every status call of a finished job hands out a link: one entry each.
        "audit_share_status": entry_s * status_per_s,
        "sign_share_export": sign_s / export_s,
        "export_s": export_s,
    }
