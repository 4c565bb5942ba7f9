"""READ_DATABASE_URL (webapp.replica): what reads of finished batches cost the primary, with and without
a hot standby.

One cluster and a streaming standby of it (``EmbeddedPostgres.standby``), on this machine; one
finished batch of ``rows`` results. The app (in this process, Flask's test client) reads it
twice over: ``pages`` results pages (100 rows each, spread over the whole batch by cursor-free
page numbers) and ``exports`` CSV downloads, first with no READ_DATABASE_URL, then with the
standby as READ_DATABASE_URL. Reported for each: the median page time, the export time, and the
CPU time the primary's server processes spent (from /proc: user + system of the postmaster's
children), per page and per export. Both servers share this machine's cores, so the point is the
primary's share, not the speed.

Run alone: ``python -m bench.replica [--rows N] [--pages N] [--exports N]``; not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from core.batches import partitions
from core.batches.ingest import new_public_id
from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate
from webapp import create_app

_BATCH = """
INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, neutral_count,
                     started_at, completed_at)
VALUES (%(public_id)s, 100, 'completed', %(rows)s, %(rows)s, %(rows)s, now(), now())
RETURNING id
"""
_INPUTS = """
INSERT INTO batch_inputs (batch_id, row_number, client_id, text)
SELECT %(batch_id)s, n, 'r' || n, 'a fine review of a product, number ' || n
FROM generate_series(1, %(rows)s) AS n
"""
_RESULTS = """
INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg)
SELECT %(batch_id)s, n, 0, 0, 1, 0 FROM generate_series(1, %(rows)s) AS n
"""


def server_cpu_seconds(server: EmbeddedPostgres) -> float:
    """User + system CPU of the server's processes (the postmaster's children), in seconds."""
    master = int((server.datadir / "pgdata" / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _reads(
    server: EmbeddedPostgres, url: str, read_url: str, public_id: str, rows: int, pages: int, exports: int
):  # type: ignore[no-untyped-def]
    app = create_app({"database_url": url, "read_database_url": read_url, "migrate_on_start": False})
    client = app.test_client()
    try:
        client.get(f"/batch/{public_id}/results?per_page=100")  # warm the pools and caches
        last_page = rows // 100
        cpu = server_cpu_seconds(server)
        times = []
        for index in range(pages):
            page = 1 + index * (last_page - 1) // max(1, pages - 1)
            started = time.perf_counter()
            answer = client.get(f"/batch/{public_id}/results?per_page=100&page={page}")
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200 and len(answer.json["results"]) == 100
        page_cpu = (server_cpu_seconds(server) - cpu) / pages
        cpu = server_cpu_seconds(server)
        started = time.perf_counter()
        for _ in range(exports):
            with client.get(f"/batch/{public_id}/results.csv") as answer:
                assert answer.data.count(b"\n") == rows + 1
        export_seconds = (time.perf_counter() - started) / exports
        export_cpu = (server_cpu_seconds(server) - cpu) / exports
    finally:
        app.extensions["db_pool"].close()
        if "db_replica" in app.extensions:
            app.extensions["db_replica"].pool.close()
    return {
        "page_ms": round(statistics.median(times) * 1000, 2),
        "primary_cpu_ms_per_page": round(page_cpu * 1000, 3),
        "export_s": round(export_seconds, 3),
        "primary_cpu_ms_per_export": round(export_cpu * 1000, 1),
    }


def run(rows: int, pages: int, exports: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    primary = EmbeddedPostgres(workdir / "primary", port=5432)
    standby = None
    try:
        url = primary.start()
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            public_id = new_public_id()
            batch_id = conn.execute(_BATCH, {"public_id": public_id, "rows": rows}).fetchone()[0]
            partitions.make(conn, batch_id)
            conn.execute(_INPUTS, {"batch_id": batch_id, "rows": rows})
            conn.execute(_RESULTS, {"batch_id": batch_id, "rows": rows})
            conn.execute("VACUUM ANALYZE batch_inputs, batch_results")
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        standby = primary.standby(workdir / "standby", 5433)
        read_url = standby.start()
        with psycopg.connect(read_url, autocommit=True) as conn:
            while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                time.sleep(0.1)
        return {
            "rows": rows,
            "primary only": _reads(primary, url, "", public_id, rows, pages, exports),
            "with READ_DATABASE_URL": _reads(primary, url, read_url, public_id, rows, pages, exports),
        }
    finally:
        if standby is not None:
            standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replica")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--exports", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.pages, args.exports), indent=2))


if __name__ == "__main__":
    main()
