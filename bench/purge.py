"""Purging finished batches while runners score: how long it takes, and how long runners stall.

Ten finished batches of ``rows`` results each are purged two ways in the same run, on the same
cluster, while two runners score a live batch:

* **one transaction** (the baseline): deletes them with all their rows at once
  (``DELETE ... WHERE batch_id = ANY(...)``), the obvious way to purge;
* **ours**: RESULTS_TTL marks them deleted and one runner at a time removes their rows in steps of
  REAP_STEP_ROWS, each its own transaction, at most REAP_BUDGET_SECONDS per housekeeping turn.

"Stall" is the longest time the live batch's processed count did not move, sampled every 20 ms,
against the longest such gap while nothing is purged. Run alone: ``python -m bench.purge``.
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg

from bench import Row
from bench.probe import Probe
from bench.service import cluster, runners
from core.batches import partitions
from core.batches.ingest import new_public_id

BATCHES = 10

#: A finished batch of %(rows)s rows, all neutral: its row, its inputs, its results.
FINISHED_BATCH = (
    """
    INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, neutral_count,
                         completed_at)
    VALUES (%(public_id)s, 100, 'completed', %(rows)s, %(rows)s, %(rows)s, now())
    RETURNING id
    """,
    """
    INSERT INTO batch_inputs (batch_id, row_number, client_id, text)
    SELECT %(batch_id)s, n, 'r' || n, repeat('a fine review of a product ', 4)
    FROM generate_series(1, %(rows)s) AS n
    """,
    """
    INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg)
    SELECT %(batch_id)s, n, 0, 0, 1, 0 FROM generate_series(1, %(rows)s) AS n
    """,
)

#: A batch of %(rows)s input rows and their chunks, for runners to score while a purge runs.
LIVE_BATCH = (
    """
    INSERT INTO batches (public_id, chunk_size, total_count) VALUES (%(public_id)s, 100, %(rows)s)
    RETURNING id
    """,
    """
    INSERT INTO batch_inputs (batch_id, row_number, client_id, text)
    SELECT %(batch_id)s, n, 'r' || n, 'this was good, really good ' || n
    FROM generate_series(1, %(rows)s) AS n
    """,
    """
    INSERT INTO chunks (batch_id, first_row, last_row, fair_key)
    SELECT %(batch_id)s, f, least(f + 99, %(rows)s), (f - 1) / 100
    FROM generate_series(1, %(rows)s, 100) AS f
    """,
)


def add_batch(conn: psycopg.Connection, statements: tuple[str, ...], rows: int) -> int:
    """One batch of ``statements`` (its row first, then its rows), in one transaction; its id. Its
    partitions are made in between, as an upload makes them (core.batches.partitions)."""
    params = {"public_id": new_public_id(), "rows": rows}
    with conn.transaction():
        params["batch_id"] = conn.execute(statements[0], params).fetchone()[0]
        partitions.make(conn, params["batch_id"])
        for statement in statements[1:]:
            conn.execute(statement, params)
    return params["batch_id"]


def _fill(url: str, rows: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(BATCHES):
            add_batch(conn, FINISHED_BATCH, rows)
        conn.execute("ANALYZE")
        return [r[0] for r in conn.execute("SELECT id FROM batches WHERE status = 'completed' ORDER BY id")]


class StallWatch(Probe):
    """Samples the live batch's processed_count every 20 ms; the longest time it stood still."""

    def __init__(self, url: str, batch_id: int) -> None:
        super().__init__(0.02, url)
        self.batch_id = batch_id
        self.longest = 0.0
        self._last, self._since = None, time.perf_counter()

    def sample(self, conn: psycopg.Connection) -> None:
        done = conn.execute("SELECT processed_count FROM batches WHERE id = %s", (self.batch_id,))
        value = done.fetchone()[0]
        now = time.perf_counter()
        if value != self._last:
            self._last, self._since = value, now
        else:
            self.longest = max(self.longest, now - self._since)


def _gone(conn: psycopg.Connection, ids: list[int]) -> bool:
    for table in ("batch_results", "batch_inputs"):
        if conn.execute(f"SELECT 1 FROM {table} WHERE batch_id = ANY(%s) LIMIT 1", (ids,)).fetchone():
            return False
    return not conn.execute("SELECT 1 FROM batches WHERE id = ANY(%s)", (ids,)).fetchone()


def run(rows: int = 100_000) -> dict[str, float]:
    """Both ways, on one cluster, with two runners scoring throughout."""
    figures: dict[str, float] = {}
    with cluster() as url, psycopg.connect(url, autocommit=True) as conn:
        live = add_batch(conn, LIVE_BATCH, 2_000_000)
        env = {"RESULTS_TTL": "7d", "RELEASE_EXPIRED_SECONDS": "1", "SCORER": "fast"}
        with runners(url, 2, **env):
            time.sleep(3)  # runners warm up
            with StallWatch(url, live) as quiet:
                time.sleep(5)
            figures["quiet_stall_s"] = quiet.longest

            ids = _fill(url, rows)
            with StallWatch(url, live) as old:
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("DELETE FROM batches WHERE id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM batch_results WHERE batch_id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM batch_inputs WHERE batch_id = ANY(%s)", (ids,))
                figures["old_seconds"] = time.perf_counter() - started
            figures["old_stall_s"] = old.longest

            ids = _fill(url, rows)
            with StallWatch(url, live) as ours:
                started = time.perf_counter()
                # Past RESULTS_TTL (7d) from now on: the runners purge them by themselves.
                conn.execute(
                    "UPDATE batches SET completed_at = now() - interval '30 days' WHERE id = ANY(%s)", (ids,)
                )
                while not _gone(conn, ids):
                    time.sleep(0.1)
                figures["ours_seconds"] = time.perf_counter() - started
            figures["ours_stall_s"] = ours.longest
    figures["rows"] = rows
    return figures


def rows(p: dict[str, float]) -> list[Row]:
    """``make bench``'s row for :func:`run`."""
    return [
        (
            f"purge of 10 finished batches × {p['rows']:,.0f} results while 2 runners score",
            f"one transaction deletes them all: {p['old_seconds']:.2f} s, "
            f"the live batch's longest pause {p['old_stall_s'] * 1e3:.0f} ms (none purging: "
            f"{p['quiet_stall_s'] * 1e3:.0f} ms); the runner doing it paused for all of it",
            f"marked, then reaped in 5,000-row steps: **{p['ours_seconds']:.1f} s** in all, longest pause "
            f"**{p['ours_stall_s'] * 1e3:.0f} ms**; no runner pauses more than 0.5 s per turn",
            "no transaction over one step; pauses bounded",
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.purge")
    parser.add_argument("--rows", type=int, default=100_000, help="results per purged batch")
    print(json.dumps(run(parser.parse_args().rows), indent=2))
