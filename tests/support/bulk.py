"""Loads many events straight into PostgreSQL with COPY (for large-export tests)."""

from __future__ import annotations

import orjson
import psycopg

from examtrail.core.timeutil import format_ms

BASE_MS = 1_780_000_000_000


def event_doc(event_id: str, name: str, ms: int, comment: str | None) -> str:
    flagging = None
    if comment is not None:
        flagging = {
            "flagType": "suspicious",
            "flagSubTypes": ["phone"],
            "comment": comment,
            "severityLevel": "low",
        }
    return orjson.dumps(
        {
            "eventId": event_id,
            "event": name,
            "timeStamp": format_ms(ms),
            "extraInfo": None,
            "flaggingInfo": flagging,
            "attachedFiles": [],
            "userId": 9001 if flagging else None,
        }
    ).decode()


def load_events(dsn: str, test_id: int, per_candidate: int) -> int:
    """COPY ``per_candidate`` events onto every candidate of test ``test_id``; returns the count."""
    dsn = dsn.replace("postgresql+psycopg://", "postgresql://")
    total = 0
    with psycopg.connect(dsn) as conn:
        test_pk, candidates = conn.execute(
            "SELECT t.id, array_agg(c.id ORDER BY c.user_id) FROM tests t "
            "JOIN candidates c ON c.test_pk = t.id WHERE t.external_id = %s GROUP BY t.id",
            (test_id,),
        ).fetchone() or (None, [])
        assert test_pk is not None, "create the test and its candidates first"
        with conn.cursor().copy(
            "COPY events (test_pk, candidate_pk, event_id, event, occurred_at_ms, creator_user_id, "
            "flag_type, doc, file_count, created_at) FROM STDIN"
        ) as copy:
            for candidate_pk in candidates:
                for n in range(per_candidate):
                    ms = BASE_MS + n * 1000
                    event_id = f"{candidate_pk}-{n}"
                    flagged = n % 10 == 0
                    doc = event_doc(event_id, "flag" if flagged else "tick", ms, "seen" if flagged else None)
                    copy.write_row(
                        (
                            test_pk,
                            candidate_pk,
                            event_id,
                            "flag" if flagged else "tick",
                            ms,
                            9001 if flagged else None,
                            "suspicious" if flagged else None,
                            doc,
                            0,
                            "2026-06-01T00:00:00",
                        )
                    )
                    total += 1
    return total
