"""Batch ingestion beside COPY, several rounds in one run (issue #15 item 4).

``python -m bench.ingest_ab [rounds]``: a fresh PostgreSQL database, ``examtrail serve --workers 2``
(local store), then per round the same 200,000 events through the batch API (5,000-event
batches, 4 clients) and by psycopg COPY into the events table; prints each round's ratio.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from statistics import median

from bench import deploy, measure
from bench.generate import GenerateSpec

TENANT = "bench-ingest"
DATABASE = os.environ.get("BENCH_INGEST_DB", "examtrail_bench_ingest_ab")


def main(rounds: int = 3, events: int = 200_000, batch: int = 5000, clients: int = 4) -> None:
    work = Path(os.environ.get("BENCH_WORK", "var/bench-ingest"))
    work.mkdir(parents=True, exist_ok=True)
    dsn = deploy.recreate_pg_database(DATABASE)
    env = deploy.common_env(
        work / "data",
        EXAMTRAIL_DATABASE_URL=deploy.sqlalchemy_url(dsn),
        EXAMTRAIL_BROKER_URL=deploy.REDIS_URL,
    )
    pg = deploy.Deployment("ingest", env, work / "logs")
    pg.migrate()
    pg.start_api(workers=2)
    ratios = []
    try:
        client_id, api_key = pg.create_client(TENANT)
        token = pg.token(client_id, api_key)
        for rnd in range(rounds):
            spec = GenerateSpec(
                test_id=1000 + rnd,
                candidates=max(1, events // batch),
                events_per_candidate=batch,
                absent_candidates=0,
                seed=7,
                tenant=TENANT,
            )
            people, bodies, rows = measure.ingest_dataset(spec, batch)
            api = measure.ingest_via_api(pg, token, 1000 + rnd, people, bodies, clients)
            copy = measure.copy_rows(dsn, TENANT, 2000 + rnd, people, rows)
            ratio = api["events_per_s"] / copy["events_per_s"]
            ratios.append(ratio)
            print(
                f"round {rnd + 1}: API {api['seconds']:.3f} s ({api['events_per_s']:,.0f}/s), "
                f"COPY {copy['seconds']:.3f} s ({copy['events_per_s']:,.0f}/s), ratio {ratio:.2f}",
                flush=True,
            )
        print(f"median ratio {median(ratios):.2f}")
    finally:
        pg.stop()
        deploy.drop_pg_database(DATABASE)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
