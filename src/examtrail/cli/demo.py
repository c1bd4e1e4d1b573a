"""Demo data for ``make run``: one tenant, one client, one test with a few candidates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from examtrail.auth import repository as auth_repository
from examtrail.auth import service as auth_service
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.settings import Settings
from examtrail.ingest import service as ingest
from examtrail.ingest.schemas import CandidateIn, EventIn, ExtraInfo, FlaggingInfo
from examtrail.storage import build_object_store

DEMO_TENANT = "demo"
DEMO_TEST_ID = 1001


@dataclass(frozen=True, slots=True)
class DemoResult:
    client_id: str
    api_key: str
    credentials_file: Path
    test_id: int
    candidates: int
    events: int


def _events(user_id: int, start: datetime) -> list[EventIn]:
    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    prefix = f"demo-{user_id}"
    events = [
        EventIn(
            eventId=f"{prefix}-1",
            event="new_seb_login",
            timeStamp=at(0),
            extraInfo=ExtraInfo(type="sebVersion", value="3.7.1"),
        ),
        EventIn(eventId=f"{prefix}-2", event="network_lost", timeStamp=at(12.5)),
        EventIn(
            eventId=f"{prefix}-3",
            event="network_restored",
            timeStamp=at(13.25),
            extraInfo=ExtraInfo(type="offlineSeconds", value="45"),
        ),
        EventIn(eventId=f"{prefix}-4", event="idle_warning", timeStamp=at(40)),
        EventIn(eventId=f"{prefix}-9", event="submitted", timeStamp=at(88)),
    ]
    if user_id % 2 == 0:
        events.append(
            EventIn(
                eventId=f"{prefix}-5",
                event="flag",
                timeStamp=at(25),
                userId=9001,
                flaggingInfo=FlaggingInfo(
                    flagType="suspicious_behaviour",
                    flagSubTypes=["phone_visible"],
                    comment="Phone on the desk during the exam.",
                    severityLevel="high",
                ),
            )
        )
    return events


def seed_demo(settings: Settings) -> DemoResult:
    engine = build_engine(settings)
    sessions = build_session_factory(engine)
    store = build_object_store(settings)
    store.ensure_ready()
    credentials = settings.data_dir / "demo-client.json"
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    try:
        with transaction(sessions) as session:
            saved = json.loads(credentials.read_text()) if credentials.exists() else None
            client = auth_repository.get_client(session, saved["clientId"]) if saved else None
            if saved and client is not None and client.revoked_at is None:
                client_id, api_key, tenant_id = saved["clientId"], saved["apiKey"], client.tenant_id
            else:
                created = auth_service.create_client(
                    session, tenant_name=DEMO_TENANT, scopes=frozenset({"ingest", "export"}), name="demo"
                )
                client_id, api_key, tenant_id = created.client_id, created.api_key, created.tenant_id
            ingest.put_test(session, tenant_id, DEMO_TEST_ID, "Demo: Mathematics final")
            test_row = ingest.require_test(session, tenant_id, DEMO_TEST_ID)
            candidates = [CandidateIn(userId=2000 + n, candidateId=f"C-{n:03d}") for n in range(1, 6)]
            ingest.put_candidates(session, test_row, candidates)
            total = 0
            # The last candidate has no events: exports list them too.
            for candidate in candidates[:-1]:
                batch = _events(candidate.userId, start)
                ingest.add_events(session, test_row, candidate.userId, batch)
                total += len(batch)

        with transaction(sessions) as session:
            file_name = "evidence.txt"
            target = ingest.prepare_upload(session, tenant_id, DEMO_TEST_ID, 2002, "demo-2002-5", file_name)
            if target.replaces is None:
                writer = store.open_writer(target.storage_key, content_type="text/plain")
                writer.write(b"Invigilator note: phone visible on the desk at 09:25.\n")
                stored = writer.commit()
                ingest.record_upload(session, target, file_name, "text/plain", stored.size, stored.sha256)
    finally:
        engine.dispose()
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.write_text(json.dumps({"clientId": client_id, "apiKey": api_key, "testId": DEMO_TEST_ID}))
    credentials.chmod(0o600)
    return DemoResult(client_id, api_key, credentials, DEMO_TEST_ID, len(candidates), total)
