"""``bench.generate.derive_postgres``: the 10M scale test as copies of the generated main test.

The copies must be the source's data with new identities: the same docs but for their
``eventId``, new unique userIds, candidateIds and eventIds, and the attachments on the copies.
"""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest
from sqlalchemy import create_engine, text

from bench.generate import GenerateSpec, derive_postgres, generate
from examtrail.core.settings import Settings
from tests.support import db

pytestmark = pytest.mark.skipif(db.backend() != "postgresql", reason="derives inside PostgreSQL")

SOURCE = GenerateSpec(test_id=1, candidates=6, events_per_candidate=40, absent_candidates=1, seed=4)


def _rows(settings: Settings, test_id: int) -> tuple[list[tuple[int, str]], list[dict[str, object]]]:
    """(userId, candidateId) of the test's candidates, and its events with their attachment count."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            pk = conn.scalar(text("SELECT id FROM tests WHERE external_id = :t"), {"t": test_id})
            people = conn.execute(
                text("SELECT user_id, candidate_id FROM candidates WHERE test_pk = :pk ORDER BY id"),
                {"pk": pk},
            ).all()
            events = conn.execute(
                text(
                    "SELECT e.event_id, e.doc, e.file_count, e.candidate_pk, "
                    "(SELECT count(*) FROM attachments a WHERE a.event_pk = e.id) AS files "
                    "FROM events e WHERE e.test_pk = :pk ORDER BY e.id"
                ),
                {"pk": pk},
            ).mappings()
            return [(int(u), str(c)) for u, c in people], [dict(e) for e in events]
    finally:
        engine.dispose()


def _without_event_id(doc: str) -> bytes:
    body = orjson.loads(doc)
    del body["eventId"]
    return orjson.dumps(body)


def test_derived_test_is_copies_of_the_source_with_new_identities(settings: Settings) -> None:
    generate(settings, SOURCE, show_progress=False)
    spec = GenerateSpec(test_id=100, candidates=18, events_per_candidate=40, tenant=SOURCE.tenant)

    result = derive_postgres(settings, SOURCE.test_id, spec)

    source_people, source_events = _rows(settings, SOURCE.test_id)
    people, events = _rows(settings, 100)
    assert (result.candidates, result.events) == (3 * 7, 3 * 240) == (len(people), len(events))
    assert len({u for u, _ in people}) == len(people)
    assert len({c for _, c in people}) == len(people)
    assert all(re.fullmatch(r"C-\d{6}", c) for _, c in people)
    assert not {u for u, _ in people[7:]} & {u for u, _ in source_people}

    for event in events:
        assert orjson.loads(str(event["doc"]))["eventId"] == event["event_id"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", str(event["event_id"]))
        assert event["files"] == event["file_count"]
    assert len({e["event_id"] for e in events}) == len(events)
    assert Counter(_without_event_id(str(e["doc"])) for e in events) == Counter(
        {doc: 3 * n for doc, n in Counter(_without_event_id(str(e["doc"])) for e in source_events).items()}
    )
    assert sorted(Counter(e["candidate_pk"] for e in events).values()) == [40] * 18
    with_files = sum(1 for e in source_events if e["files"])
    assert result.with_files == sum(1 for e in events if e["files"]) == 3 * with_files
    assert result.counts == {
        k: 3 * n for k, n in Counter(orjson.loads(str(e["doc"]))["event"] for e in source_events).items()
    }


def test_derive_refuses_a_size_that_is_not_whole_copies(settings: Settings) -> None:
    generate(settings, SOURCE, show_progress=False)
    with pytest.raises(ValueError, match="multiple"):
        derive_postgres(
            settings, SOURCE.test_id, GenerateSpec(test_id=100, candidates=10, events_per_candidate=40)
        )
    with pytest.raises(ValueError, match="events per candidate"):
        derive_postgres(
            settings, SOURCE.test_id, GenerateSpec(test_id=101, candidates=12, events_per_candidate=50)
        )
