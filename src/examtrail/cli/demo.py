"""Demo data for ``make run``: one tenant, one client, one test with candidates worth reviewing:
network gaps, flags of each severity, invigilator events, a text and an image evidence file."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from examtrail.audit.actions import CLI_ACTOR
from examtrail.auth import repository as auth_repository
from examtrail.auth import service as auth_service
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.settings import Settings
from examtrail.ingest import repository as ingest_repository
from examtrail.ingest import service as ingest
from examtrail.ingest.schemas import CandidateIn, EventIn, ExtraInfo, FlaggingInfo
from examtrail.storage import build_object_store

DEMO_TENANT = "demo"
DEMO_TEST_ID = 1001
INVIGILATOR = 9001


@dataclass(frozen=True, slots=True)
class DemoResult:
    client_id: str
    api_key: str
    credentials_file: Path
    test_id: int
    candidates: int
    events: int


def _at(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)


def _flag(
    event_id: str, at: datetime, flag_type: str, sub_types: list[str], comment: str, severity: str
) -> EventIn:
    return EventIn(
        eventId=event_id,
        event="flag",
        timeStamp=at,
        userId=INVIGILATOR,
        flaggingInfo=FlaggingInfo(
            flagType=flag_type, flagSubTypes=sub_types, comment=comment, severityLevel=severity
        ),
    )


def _gap(prefix: str, n: int, start: datetime, lost: float, restored: float) -> list[EventIn]:
    seconds = round((restored - lost) * 60)
    return [
        EventIn(eventId=f"{prefix}-net{n}-lost", event="network_lost", timeStamp=_at(start, lost)),
        EventIn(
            eventId=f"{prefix}-net{n}-restored",
            event="network_restored",
            timeStamp=_at(start, restored),
            extraInfo=ExtraInfo(type="offlineSeconds", value=str(seconds)),
        ),
    ]


def _events(user_id: int, start: datetime) -> list[EventIn]:
    """A morning's exam for one candidate: each tells a different story for the review pages."""
    prefix = f"demo-{user_id}"
    events = [
        EventIn(
            eventId=f"{prefix}-1",
            event="new_seb_login",
            timeStamp=_at(start, 0),
            extraInfo=ExtraInfo(type="sebVersion", value="3.7.1"),
        ),
        EventIn(
            eventId=f"{prefix}-2",
            event="security_level_applied",
            timeStamp=_at(start, 0.5),
            extraInfo=ExtraInfo(type="level", value="strict"),
        ),
    ]
    if user_id == 2001:
        events += _gap(prefix, 1, start, 12.5, 13.25)
        events.append(EventIn(eventId=f"{prefix}-4", event="idle_warning", timeStamp=_at(start, 40)))
        events.append(
            _flag(f"{prefix}-5", _at(start, 41), "attention", ["looking_away"], "Looked away twice.", "low")
        )
    elif user_id == 2002:
        events += _gap(prefix, 1, start, 12.5, 13.25)
        events.append(
            _flag(
                f"{prefix}-5",
                _at(start, 25),
                "suspicious_behaviour",
                ["phone_visible"],
                "Phone on the desk during the exam.",
                "high",
            )
        )
        events.append(
            EventIn(eventId=f"{prefix}-6", event="message_sent", timeStamp=_at(start, 26), userId=INVIGILATOR)
        )
    elif user_id == 2003:
        events += _gap(prefix, 1, start, 8, 8.5)
        events.append(EventIn(eventId=f"{prefix}-4", event="idle_warning", timeStamp=_at(start, 30.25)))
        events += _gap(prefix, 2, start, 31, 37.5)
        events.append(
            _flag(
                f"{prefix}-5",
                _at(start, 38),
                "network",
                ["long_outage"],
                "Six and a half minutes offline; candidate says the router restarted.",
                "medium",
            )
        )
    elif user_id == 2004:
        events.append(
            EventIn(
                eventId=f"{prefix}-4",
                event="device_security_violation",
                timeStamp=_at(start, 52),
                extraInfo=ExtraInfo(type="process", value="remote-desktop"),
            )
        )
        events.append(
            _flag(
                f"{prefix}-5",
                _at(start, 53),
                "security",
                ["remote_access", "second_screen"],
                "Remote desktop software running; exam paused and lead invigilator called.",
                "critical",
            )
        )
        events.append(EventIn(eventId=f"{prefix}-7", event="timed_out", timeStamp=_at(start, 90)))
    elif user_id == 2005:
        events.append(
            EventIn(
                eventId=f"{prefix}-4",
                event="extra_time",
                timeStamp=_at(start, 5),
                userId=INVIGILATOR,
                extraInfo=ExtraInfo(type="minutes", value="15"),
            )
        )
        events.append(_flag(f"{prefix}-5", _at(start, 61), "noise", [], "Talking to self.", "low"))
    if user_id != 2004:
        events.append(EventIn(eventId=f"{prefix}-9", event="submitted", timeStamp=_at(start, 88)))
    return events


def _demo_png() -> bytes:
    """A small picture for the image evidence: a phone on a desk (drawn, no image library)."""
    width, height = 160, 100
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            if 60 <= x < 100 and 15 <= y < 85:
                colour = (235, 235, 235) if 64 <= x < 96 and 22 <= y < 74 else (30, 30, 36)
            else:
                colour = (150, 105, 60) if (x // 20 + y // 25) % 2 else (160, 115, 70)
            row += bytes(colour)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    header = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


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
            ingest.put_test(session, tenant_id, DEMO_TEST_ID, "Demo: Mathematics final", actor=CLI_ACTOR)
            test_row = ingest.require_test(session, tenant_id, DEMO_TEST_ID)
            candidates = [CandidateIn(userId=2000 + n, candidateId=f"C-{n:03d}") for n in range(1, 7)]
            ingest.put_candidates(session, test_row, candidates, actor=CLI_ACTOR)
            total = 0
            # The last candidate has no events: exports list them too.
            for candidate in candidates[:-1]:
                batch = _events(candidate.userId, start)
                ingest.add_events(session, test_row, candidate.userId, batch)
                total += len(batch)

        evidence = [
            ("evidence.txt", "text/plain", b"Invigilator note: phone visible on the desk at 09:25.\n"),
            ("phone.png", "image/png", _demo_png()),
        ]
        for file_name, content_type, content in evidence:
            with transaction(sessions) as session:
                target = ingest.prepare_upload(
                    session, tenant_id, DEMO_TEST_ID, 2002, "demo-2002-5", file_name
                )
                if ingest_repository.get_attachment(session, target.event_pk, file_name) is None:
                    writer = store.open_writer(target.storage_key, content_type=content_type)
                    writer.write(content)
                    stored = writer.commit()
                    ingest.record_upload(session, target, file_name, content_type, stored.size, stored.sha256)
    finally:
        engine.dispose()
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.write_text(json.dumps({"clientId": client_id, "apiKey": api_key, "testId": DEMO_TEST_ID}))
    credentials.chmod(0o600)
    return DemoResult(client_id, api_key, credentials, DEMO_TEST_ID, len(candidates), total)
