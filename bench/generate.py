"""``python -m bench.generate``: a realistic test of N candidates x M events for benchmarks.

    uv run python -m bench.generate --candidates 2000 --events 500   # 1,000,000 events
    uv run python -m bench.generate --help

It writes into the database and object store the ``EXAMTRAIL_*`` settings point at
(migrated first: ``examtrail db upgrade``); ``make bench`` (``bench.run``) calls
``generate()`` directly.

Events are a mix of system events (no ``userId``) and invigilator events; about 10% are
flags with a comment, about a third carry ``extraInfo`` and about 2% have one attached
file, a small real object written to the configured object store. The stored ``doc``
of every event comes from ingestion's single definition (``examtrail.ingest.docs.
build_doc``), so it is byte for byte what ingestion stores; the test suite checks it
against ``examtrail.ingest.service.event_doc``.

Rows go in by the fastest path of each backend: ``COPY`` on PostgreSQL, ``executemany``
in large transactions on SQLite. The same seed and sizes give the same test on both.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine, delete, select

from examtrail.core.settings import Settings, get_settings
from examtrail.ingest.docs import TimestampFormatter, build_doc

app = typer.Typer(add_completion=False, help="Generate a large realistic test for the benchmarks.")
console = Console()

START_MS = 1_780_304_400_000  # 2026-06-01T09:00:00Z
_ROWS_PER_WRITE = 20_000

SYSTEM_EVENTS = (
    "network_lost",
    "network_restored",
    "idle_warning",
    "offline",
    "new_seb_login",
    "lockdown_browser_error",
    "device_security_violation",
    "suspicious_behaviour_detected",
    "security_level_applied",
    "timed_out",
)
INVIGILATOR_EVENTS = (
    "attendance_confirmed",
    "id_confirmed",
    "extra_time",
    "message_sent",
    "paused",
    "resumed",
    "unflag",
    "exempt_from_lockdown",
)
EXTRA_INFO = (
    ("sebVersion", "3.7.1"),
    ("ip", "10.20.30.40"),
    ("offlineSeconds", "45"),
    ("browser", "Safe Exam Browser 3.7.1 (Windows 11)"),
    ("extraMinutes", "15"),
    ("message", 'Please raise your hand if you need "help" — Bitte melden Sie sich.'),
)
FLAG_TYPES = ("suspicious_behaviour", "technical_problem", "rule_violation", "note")
FLAG_SUB_TYPES = ("phone_visible", "talking", "left_seat", "second_screen", "notes_on_desk", "noise")
COMMENTS = (
    "Phone on the desk during the exam.",
    'Candidate said "I am finished" and kept typing.',
    "Left the room for 4 minutes; escorted by invigilator Ø. Hansen.",
    "Whispering with the neighbour (seat 14B).",
    "Screen showed another window\\tab; asked to close it.",
    "Kandidaten hadde notater på pulten — tatt inn.",
)
SEVERITIES = ("low", "medium", "high", None)
FILE_TYPES = (("evidence.jpg", "image/jpeg"), ("note.txt", "text/plain"), ("screenshot.png", "image/png"))


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One synthetic event: the API fields, its canonical doc, and an optional file."""

    event_id: str
    event: str
    occurred_at_ms: int
    extra_info: dict[str, str] | None
    flagging_info: dict[str, Any] | None
    user_id: int | None
    doc: str
    file: tuple[str, str] | None = None

    def api_json(self) -> dict[str, Any]:
        """The event as a client would POST it (``timeStamp`` in RFC 3339 UTC)."""
        return {
            "eventId": self.event_id,
            "event": self.event,
            "timeStamp": orjson.loads(self.doc)["timeStamp"],
            "extraInfo": self.extra_info,
            "flaggingInfo": self.flagging_info,
            "userId": self.user_id,
        }


@dataclass(frozen=True, slots=True)
class GeneratedCandidate:
    user_id: int
    candidate_id: str
    event_count: int


@dataclass
class GenerateSpec:
    test_id: int = 5000
    candidates: int = 2000
    events_per_candidate: int = 500
    # Extra candidates registered on the test without any event (the export lists them too).
    absent_candidates: int = -1
    seed: int = 2026
    tenant: str = "bench"
    # Distinct file objects written to the store; more attachments than that share objects.
    max_objects: int = 2000

    @property
    def absent(self) -> int:
        return self.absent_candidates if self.absent_candidates >= 0 else max(1, self.candidates // 100)

    @property
    def total_events(self) -> int:
        return self.candidates * self.events_per_candidate


@dataclass
class GenerateResult:
    tenant_id: int
    test_id: int
    test_pk: int
    candidates: int
    events: int
    flagged: int = 0
    with_extra_info: int = 0
    with_files: int = 0
    objects: int = 0
    seconds: float = 0.0
    backend: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class Synthesizer:
    """Deterministic event stream for a spec (same seed, same test on every backend)."""

    def __init__(self, spec: GenerateSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.fmt = TimestampFormatter()
        self.counter = 0

    def candidates(self) -> list[GeneratedCandidate]:
        spec = self.spec
        rng = random.Random(spec.seed ^ 0x5EED)
        total = spec.candidates + spec.absent
        user_ids = rng.sample(range(100_000, 100_000 + total * 50), total)
        people = [
            GeneratedCandidate(user_id, f"C-{n:06d}", spec.events_per_candidate if n < spec.candidates else 0)
            for n, user_id in enumerate(user_ids)
        ]
        rng.shuffle(people)  # insertion order differs from userId order, as in real life
        return people

    def events(self, candidate: GeneratedCandidate) -> list[GeneratedEvent]:
        rng = self.rng
        fmt = self.fmt
        count = candidate.event_count
        ms = START_MS + rng.randrange(0, 600_000)
        out: list[GeneratedEvent] = []
        for n in range(count):
            self.counter += 1
            if n and rng.random() >= 0.05:  # 5% share the previous millisecond: eventId decides
                ms += rng.randrange(1, 20_000)
            event_id = f"{rng.getrandbits(32):08x}-{self.counter:x}"
            roll = rng.random()
            extra: dict[str, str] | None = None
            flagging: dict[str, Any] | None = None
            user_id: int | None = None
            if n == 0:
                name = "new_seb_login"
                extra = {"type": "sebVersion", "value": "3.7.1"}
            elif n == count - 1:
                name = "submitted"
            elif roll < 0.10:
                name = "flag"
                user_id = 9000 + rng.randrange(20)
                subs = rng.sample(FLAG_SUB_TYPES, rng.randrange(0, 3))
                flagging = {
                    "flagType": rng.choice(FLAG_TYPES),
                    "flagSubTypes": subs,
                    "comment": rng.choice(COMMENTS),
                    "severityLevel": rng.choice(SEVERITIES),
                }
            elif roll < 0.25:
                name = rng.choice(INVIGILATOR_EVENTS)
                user_id = 9000 + rng.randrange(20)
            else:
                name = rng.choice(SYSTEM_EVENTS)
            if extra is None and rng.random() < 0.33:
                kind, value = rng.choice(EXTRA_INFO)
                extra = {"type": kind, "value": value}
            attached = rng.choice(FILE_TYPES) if rng.random() < 0.02 else None
            doc = build_doc(event_id, name, ms, extra, flagging, user_id, timestamp=fmt)
            out.append(GeneratedEvent(event_id, name, ms, extra, flagging, user_id, doc, attached))
        return out


# --- loading ----------------------------------------------------------------------------


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _prepare_test(engine: Engine, spec: GenerateSpec, replace: bool) -> tuple[int, int]:
    """(tenant id, test pk) of an empty test, creating tenant and test as needed."""
    from examtrail.auth import repository as auth_repository
    from examtrail.core.db import build_session_factory, transaction
    from examtrail.ingest import repository as ingest_repository
    from examtrail.ingest.models import Candidate, Test

    with transaction(build_session_factory(engine)) as session:
        tenant = auth_repository.get_tenant_by_name(session, spec.tenant) or auth_repository.add_tenant(
            session, spec.tenant
        )
        existing = ingest_repository.get_test(session, tenant.id, spec.test_id)
        if existing is not None:
            has_rows = session.scalar(select(Candidate.id).where(Candidate.test_pk == existing.id).limit(1))
            if has_rows is not None and not replace:
                raise typer.BadParameter(f"test {spec.test_id} already has data; use --replace")
            session.execute(delete(Test).where(Test.id == existing.id))
        title = f"Benchmark {spec.candidates} x {spec.events_per_candidate}"
        test, _ = ingest_repository.upsert_test(session, tenant.id, spec.test_id, title)
        return tenant.id, test.id


def _write_objects(
    settings: Settings, count: int, tenant_id: int, test_pk: int
) -> list[tuple[str, int, str]]:
    """Write ``count`` small evidence objects concurrently; (key, size, sha256) each."""
    from examtrail.storage import build_object_store

    store = build_object_store(settings)
    store.ensure_ready()

    def put(n: int) -> tuple[str, int, str]:
        key = f"attachments/{tenant_id}/{test_pk}/bench/{uuid.uuid4().hex}"
        body = f"Evidence #{n}: invigilator note written by the benchmark generator.\n".encode() * 8
        writer = store.open_writer(key, content_type="application/octet-stream")
        writer.write(body)
        stored = writer.commit()
        return key, stored.size, stored.sha256

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(put, range(count)))


def _stream_batches(
    synth: Synthesizer, people: Sequence[GeneratedCandidate], pks: dict[int, int]
) -> Iterator[tuple[list[tuple[int, GeneratedEvent]], int]]:
    """Events with their candidate pk, in write-sized batches; yields (batch, candidates done)."""
    batch: list[tuple[int, GeneratedEvent]] = []
    for done, person in enumerate(people, 1):
        pk = pks[person.user_id]
        batch.extend((pk, ev) for ev in synth.events(person))
        if len(batch) >= _ROWS_PER_WRITE or done == len(people):
            yield batch, done
            batch = []


def generate(
    settings: Settings,
    spec: GenerateSpec,
    *,
    replace: bool = False,
    show_progress: bool = True,
) -> GenerateResult:
    """Create the test described by ``spec`` in the configured database and store."""
    from examtrail.core.db import build_engine

    started = time.perf_counter()
    engine = build_engine(settings)
    try:
        tenant_id, test_pk = _prepare_test(engine, spec, replace)
        loader = _load_postgres if engine.dialect.name == "postgresql" else _load_sqlite
        result = GenerateResult(
            tenant_id, spec.test_id, test_pk, spec.candidates + spec.absent, 0, backend=engine.dialect.name
        )
        with _progress(show_progress) as progress:
            loader(engine, settings, spec, tenant_id, test_pk, result, progress)
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _tally(result: GenerateResult, batch: list[tuple[int, GeneratedEvent]]) -> None:
    result.events += len(batch)
    for _, ev in batch:
        if ev.flagging_info is not None:
            result.flagged += 1
        if ev.extra_info is not None:
            result.with_extra_info += 1
        if ev.file is not None:
            result.with_files += 1
        result.counts[ev.event] = result.counts.get(ev.event, 0) + 1


def _attachment_rows(
    settings: Settings,
    spec: GenerateSpec,
    tenant_id: int,
    test_pk: int,
    files: list[tuple[str, tuple[str, str]]],
    event_pks: dict[str, int],
    now: Any,
    result: GenerateResult,
) -> list[tuple[Any, ...]]:
    objects = _write_objects(settings, min(len(files), spec.max_objects), tenant_id, test_pk) if files else []
    result.objects = len(objects)
    rows = []
    for n, (event_id, (name, content_type)) in enumerate(files):
        key, size, sha = objects[n % len(objects)]
        rows.append((event_pks[event_id], name, content_type, size, sha, key, now))
    return rows


def _load_postgres(
    engine: Engine,
    settings: Settings,
    spec: GenerateSpec,
    tenant_id: int,
    test_pk: int,
    result: GenerateResult,
    progress: Progress,
) -> None:
    import psycopg

    synth = Synthesizer(spec)
    people = synth.candidates()
    now = datetime.now(UTC).replace(tzinfo=None)
    received = int(datetime.now(UTC).timestamp() * 1000)
    files: list[tuple[str, tuple[str, str]]] = []
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert isinstance(conn, psycopg.Connection)
        with conn.cursor() as cur:
            with cur.copy("COPY candidates (test_pk, user_id, candidate_id, created_at) FROM STDIN") as copy:
                for person in people:
                    copy.write_row((test_pk, person.user_id, person.candidate_id, now))
            cur.execute("SELECT user_id, id FROM candidates WHERE test_pk = %s", (test_pk,))
            pks = {int(u): int(pk) for u, pk in cur.fetchall()}
            task = progress.add_task("events (COPY)", total=spec.total_events, rate="")
            t0 = time.perf_counter()
            columns = (
                "test_pk, candidate_pk, event_id, event, occurred_at_ms, creator_user_id, flag_type, "
                "doc, file_count, created_at, received_at"
            )
            with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for batch, _ in _stream_batches(synth, people, pks):
                    for pk, ev in batch:
                        flag = ev.flagging_info["flagType"] if ev.flagging_info else None
                        has_file = ev.file is not None
                        copy.write_row(
                            (test_pk, pk, ev.event_id, ev.event, ev.occurred_at_ms, ev.user_id, flag, ev.doc,
                             1 if has_file else 0, now, received)
                        )  # fmt: skip
                        if has_file:
                            assert ev.file is not None
                            files.append((ev.event_id, ev.file))
                    _tally(result, batch)
                    rate = result.events / max(time.perf_counter() - t0, 1e-9)
                    progress.update(task, advance=len(batch), rate=f"{rate:,.0f} ev/s")
            cur.execute("SELECT event_id, id FROM events WHERE test_pk = %s AND file_count > 0", (test_pk,))
            event_pks = {str(e): int(pk) for e, pk in cur.fetchall()}
            rows = _attachment_rows(settings, spec, tenant_id, test_pk, files, event_pks, now, result)
            with cur.copy(
                "COPY attachments (event_pk, file_name, content_type, size, sha256, storage_key, created_at) "
                "FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        conn.commit()
        # Hint bits, visibility map and statistics now, so no measured reader pays for them.
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE candidates, events, attachments")
        conn.autocommit = False
    finally:
        raw.close()


def _load_sqlite(
    engine: Engine,
    settings: Settings,
    spec: GenerateSpec,
    tenant_id: int,
    test_pk: int,
    result: GenerateResult,
    progress: Progress,
) -> None:
    synth = Synthesizer(spec)
    people = synth.candidates()
    now = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    received = int(datetime.now(UTC).timestamp() * 1000)
    files: list[tuple[str, tuple[str, str]]] = []
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(
            "INSERT INTO candidates (test_pk, user_id, candidate_id, created_at) VALUES (?, ?, ?, ?)",
            [(test_pk, p.user_id, p.candidate_id, now) for p in people],
        )
        cur.execute("SELECT user_id, id FROM candidates WHERE test_pk = ?", (test_pk,))
        pks = {int(u): int(pk) for u, pk in cur.fetchall()}
        task = progress.add_task("events (executemany)", total=spec.total_events, rate="")
        t0 = time.perf_counter()
        sql = (
            "INSERT INTO events (test_pk, candidate_pk, event_id, event, occurred_at_ms, creator_user_id, "
            "flag_type, doc, file_count, created_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for batch, _ in _stream_batches(synth, people, pks):
            rows = []
            for pk, ev in batch:
                flag = ev.flagging_info["flagType"] if ev.flagging_info else None
                rows.append(
                    (test_pk, pk, ev.event_id, ev.event, ev.occurred_at_ms, ev.user_id, flag, ev.doc,
                     1 if ev.file else 0, now, received)
                )  # fmt: skip
                if ev.file is not None:
                    files.append((ev.event_id, ev.file))
            cur.executemany(sql, rows)
            _tally(result, batch)
            if result.events % 500_000 < len(batch):  # keep each transaction large but bounded
                cur.execute("COMMIT")
                cur.execute("BEGIN IMMEDIATE")
            rate = result.events / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=len(batch), rate=f"{rate:,.0f} ev/s")
        cur.execute("SELECT event_id, id FROM events WHERE test_pk = ? AND file_count > 0", (test_pk,))
        event_pks = {str(e): int(pk) for e, pk in cur.fetchall()}
        rows_a = _attachment_rows(settings, spec, tenant_id, test_pk, files, event_pks, now, result)
        cur.executemany(
            "INSERT INTO attachments (event_pk, file_name, content_type, size, sha256, storage_key, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows_a,
        )
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
        cur.close()
    finally:
        raw.close()


# --- deriving a large test from a generated one (PostgreSQL) ------------------------------

_DOC_HEAD = '{"eventId":"'


def derive_postgres(
    settings: Settings, source_test_id: int, spec: GenerateSpec, *, replace: bool = False
) -> GenerateResult:
    """``spec``'s test as ``copies`` copies of the generated test ``source_test_id``, inside
    PostgreSQL (``INSERT ... SELECT``): minutes where ``generate`` takes a quarter of an hour at 10M.

    ``spec.candidates`` must be a multiple of the source's candidates with events, and its
    events per candidate the source's. Copy ``k`` gets new ``userId``s (shifted by ``k`` x the
    source's userId span: the same order inside each copy), ``candidateId``s ``C-`` + the next
    numbers, and new event rows with fresh primary keys and ``eventId``s (the source's random
    prefix, then the new key in hex, as the generator's ``prefix-counter``), their ``doc``
    rewritten to carry that ``eventId``. Event mix, times, ``extraInfo``/``flaggingInfo`` and
    doc sizes are the source's; attachment rows are copied onto the new events (same objects:
    the generator shares objects between attachments already).
    """
    import psycopg

    from examtrail.core.db import build_engine

    started = time.perf_counter()
    engine = build_engine(settings)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        raise ValueError("derive_postgres needs PostgreSQL")
    try:
        tenant_id, test_pk = _prepare_test(engine, spec, replace)
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            assert isinstance(conn, psycopg.Connection)
            role = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            superuser = bool(role and role[0])
            result = _derive(conn, spec, source_test_id, tenant_id, test_pk, superuser)
            conn.commit()
            # As ``generate``: hint bits, visibility map and statistics before anything is timed,
            # and (where allowed) the GBs of dirty pages written out now, not during the next export.
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE candidates, events, attachments")
            if superuser:
                conn.execute("CHECKPOINT")
            conn.autocommit = False
        finally:
            raw.close()
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _derive(
    conn: Any, spec: GenerateSpec, source_test_id: int, tenant_id: int, test_pk: int, superuser: bool
) -> GenerateResult:
    cur = conn.cursor()
    if superuser:
        # No per-row foreign-key triggers (~40% of the insert time): every key below comes
        # from rows this transaction just wrote or read, so the constraints hold regardless.
        cur.execute("SET LOCAL session_replication_role = replica")
    row = cur.execute(
        "SELECT id FROM tests WHERE tenant_id = %s AND external_id = %s", (tenant_id, source_test_id)
    ).fetchone()
    if row is None:
        raise ValueError(f"source test {source_test_id} does not exist")
    src = int(row[0])
    with_events, total, user_min, user_max = cur.execute(
        "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e WHERE e.candidate_pk = c.id)), "
        "count(*), min(user_id), max(user_id) FROM candidates c WHERE test_pk = %s",
        (src,),
    ).fetchone()
    if not with_events or spec.candidates % with_events:
        raise ValueError(f"{spec.candidates} candidates is not a multiple of the source's {with_events}")
    copies = spec.candidates // with_events
    id_min, id_max, events, per_candidate = cur.execute(
        "SELECT min(id), max(id), count(*), count(*) / count(DISTINCT candidate_pk) FROM events "
        "WHERE test_pk = %s",
        (src,),
    ).fetchone()
    if per_candidate != spec.events_per_candidate:
        raise ValueError(
            f"the source has {per_candidate} events per candidate, not {spec.events_per_candidate}"
        )
    result = GenerateResult(tenant_id, spec.test_id, test_pk, copies * int(total), copies * int(events))
    result.backend = "postgresql (derived)"
    tallies = cur.execute(
        "SELECT event, count(*), count(flag_type), "
        "count(*) FILTER (WHERE doc NOT LIKE '%%\"extraInfo\":null%%'), "
        "count(*) FILTER (WHERE file_count > 0), "
        "count(*) FILTER (WHERE NOT starts_with(doc, %(head)s || event_id || '\"')) "
        "FROM events WHERE test_pk = %(src)s GROUP BY event",
        {"head": _DOC_HEAD, "src": src},
    ).fetchall()
    for name, count, flagged, extra, files, unexpected in tallies:
        if unexpected:
            raise ValueError(f"{unexpected} {name} docs do not start with their plain eventId")
        result.counts[name] = copies * int(count)
        result.flagged += copies * int(flagged)
        result.with_extra_info += copies * int(extra)
        result.with_files += copies * int(files)
    user_span = int(user_max) - int(user_min) + 1
    id_span = int(id_max) - int(id_min) + 1
    # Candidates: each copy in the source's insertion order (not userId order, as generated).
    cur.execute(
        "INSERT INTO candidates (test_pk, user_id, candidate_id, created_at) "
        "SELECT %(dst)s, c.user_id + k * %(span)s::bigint, 'C-' || lpad(x.n, greatest(6, length(x.n)), '0'), "
        "now() FROM generate_series(0, %(copies)s - 1) AS k CROSS JOIN candidates c "
        "CROSS JOIN LATERAL (SELECT (substr(c.candidate_id, 3)::bigint + k * %(total)s::bigint)::text AS n) "
        "AS x "
        "WHERE c.test_pk = %(src)s ORDER BY k, c.id",
        {"dst": test_pk, "src": src, "span": user_span, "total": total, "copies": copies},
    )
    cur.execute(
        "CREATE TEMP TABLE derive_candidates ON COMMIT DROP AS "
        "SELECT k, o.id AS old_pk, n.id AS new_pk FROM generate_series(0, %(copies)s - 1) AS k "
        "JOIN candidates o ON o.test_pk = %(src)s "
        "JOIN candidates n ON n.test_pk = %(dst)s AND n.user_id = o.user_id + k * %(span)s::bigint",
        {"dst": test_pk, "src": src, "span": user_span, "copies": copies},
    )
    cur.execute("ANALYZE derive_candidates")
    # A block of event keys for all copies (nothing else writes events while a benchmark
    # generates): copy k's row for source row i is base + k * span + (i - min).
    (base,) = cur.execute("SELECT nextval(pg_get_serial_sequence('events', 'id'))").fetchone()
    cur.execute(
        "SELECT setval(pg_get_serial_sequence('events', 'id'), %s)", (int(base) + copies * id_span - 1,)
    )
    shift = "%(base)s::bigint + m.k * %(span)s::bigint + (e.id - %(min)s::bigint)"
    new_event_id = f"split_part(e.event_id, '-', 1) || '-' || to_hex({shift})"
    columns = (
        "id, test_pk, candidate_pk, event_id, event, occurred_at_ms, creator_user_id, flag_type, doc, "
        "file_count, created_at, received_at"
    )
    # eventIds start with a random prefix: inserting 10M of them into the unique index costs a
    # random leaf page each, far beyond shared_buffers: ~60 s per 1M-event copy instead of 6-10 s.
    # Rebuilt by one sort afterwards, the same constraint, checked over every row.
    (unique,) = cur.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'events'::regclass AND conname = 'uq_events_test_event'"
    ).fetchone()
    cur.execute("ALTER TABLE events DROP CONSTRAINT uq_events_test_event")
    for k in range(copies):  # one statement per copy: each a bounded piece of work
        cur.execute(
            f"INSERT INTO events ({columns}) "
            f"SELECT {shift}, %(dst)s, m.new_pk, n.event_id, e.event, e.occurred_at_ms, e.creator_user_id, "
            "e.flag_type, %(head)s || n.event_id || substr(e.doc, %(skip)s + length(e.event_id)), "
            "e.file_count, now(), e.received_at "
            "FROM events e JOIN derive_candidates m ON m.old_pk = e.candidate_pk AND m.k = %(k)s "
            f"CROSS JOIN LATERAL (SELECT {new_event_id} AS event_id) AS n "
            "WHERE e.test_pk = %(src)s",
            {
                "dst": test_pk,
                "src": src,
                "k": k,
                "base": base,
                "span": id_span,
                "min": id_min,
                "head": _DOC_HEAD,
                "skip": len(_DOC_HEAD) + 1,
            },
        )
    cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
    cur.execute(f"ALTER TABLE events ADD CONSTRAINT uq_events_test_event {unique}")
    cur.execute(
        "INSERT INTO attachments (event_pk, file_name, content_type, size, sha256, storage_key, created_at) "
        "SELECT %(base)s::bigint + k * %(span)s::bigint + (a.event_pk - %(min)s::bigint), a.file_name, "
        "a.content_type, a.size, a.sha256, a.storage_key, now() "
        "FROM generate_series(0, %(copies)s - 1) AS k CROSS JOIN attachments a "
        "JOIN events e ON e.id = a.event_pk WHERE e.test_pk = %(src)s ORDER BY k, a.id",
        {"base": base, "span": id_span, "min": id_min, "copies": copies, "src": src},
    )
    (result.objects,) = cur.execute(
        "SELECT count(DISTINCT a.storage_key) FROM attachments a JOIN events e ON e.id = a.event_pk "
        "WHERE e.test_pk = %s",
        (src,),
    ).fetchone()
    return result


def _print_result(result: GenerateResult, as_json: bool, echo: Callable[[str], None]) -> None:
    if as_json:
        echo(json.dumps(asdict(result)))
        return
    console.print(
        f"[bold green]generated[/] test {result.test_id} on {result.backend}: "
        f"{result.candidates:,} candidates, {result.events:,} events "
        f"({result.flagged:,} flagged, {result.with_extra_info:,} with extraInfo, "
        f"{result.with_files:,} with a file in {result.objects:,} objects) in {result.seconds:.1f} s"
    )


@app.command()
def main(
    candidates: int = typer.Option(2000, "--candidates", "-n", min=1, help="Candidates with events."),
    events: int = typer.Option(500, "--events", "-m", min=1, help="Events per candidate."),
    test_id: int = typer.Option(5000, help="The test's external id (testId)."),
    tenant: str = typer.Option("bench", help="Tenant name; created if missing."),
    seed: int = typer.Option(2026, help="Random seed: the same seed gives the same test."),
    absent: int = typer.Option(-1, help="Extra candidates without events (default: 1%)."),
    max_objects: int = typer.Option(2000, help="Distinct file objects written to the store."),
    replace: bool = typer.Option(False, "--replace", help="Replace the test if it already has data."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Generate N candidates x M events (default 2,000 x 500 = 1,000,000) into the configured database."""
    spec = GenerateSpec(
        test_id=test_id,
        candidates=candidates,
        events_per_candidate=events,
        absent_candidates=absent,
        seed=seed,
        tenant=tenant,
        max_objects=max_objects,
    )
    result = generate(get_settings(), spec, replace=replace, show_progress=not as_json)
    _print_result(result, as_json, typer.echo)


if __name__ == "__main__":
    app()
