"""Retention as DROP, not DELETE: purging 10 finished batches of ``rows`` results
each, both ways, on one cluster, while two runners score a live batch:

* **rows** (without partitions to drop): the ten share their partition with a batch that is kept, so
  the reaper deletes their rows in steps of REAP_STEP_ROWS keys, each its own transaction;
* **partitions**: the ten fill one partition's range (10 batch ids) exactly, so the reaper
  detaches it (CONCURRENTLY) and drops it, for every partitioned table (batch_inputs,
  batch_results, batch_row_errors, batch_result_keys).

Each way: the batches are marked expired, then this process runs the runners' purge and reap
(core.batches.purge and reap, holding the reaper lock as ``python -m jobrunner purge`` does, so
the runners' housekeeping leaves it to us) in turns of REAP_BUDGET_SECONDS until every row and
batch row is gone. Reported: the wall time, the WAL written (pg_current_wal_lsn before and
after), the longest time the live batch's processed count stood still (bench.purge.StallWatch,
against the same while nothing is purged), and the slowest of a probe that runs every
20 ms in its own session (writes one row of a probe batch into batch_inputs and its result into
batch_results, and reads it back with ``batch_results_page``): what an upload's COPY, a runner's
finish and a results page would have waited.

Run alone: ``python -m bench.retention [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg

from bench import Row
from bench.probe import Probe
from bench.purge import FINISHED_BATCH, LIVE_BATCH, StallWatch, add_batch
from bench.service import cluster, runners
from core import batches
from core.queries import q
from jobrunner.housekeeping import REAP_BUDGET_SECONDS, REAPER_LOCK_KEY

BATCHES = 10


def _batch(conn: psycopg.Connection, rows: int) -> int:
    """A finished batch of ``rows`` rows (inputs and results; none for 0), its partitions made."""
    return add_batch(conn, FINISHED_BATCH, rows)


def _align(conn: psycopg.Connection) -> None:
    """Empty batches (deleted at once) until the next id starts a partition's range."""
    span = conn.execute("SELECT batch_partition_span()").fetchone()[0]
    while True:
        following = conn.execute(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM batches_id_seq"
        ).fetchone()[0]
        if following % span == 0:
            return
        filler = _batch(conn, 0)
        conn.execute("UPDATE batches SET deleted_at = now() WHERE id = %s", (filler,))


_PROBE_WRITE = """
WITH next AS (
    SELECT coalesce(max(row_number), 0) + 1 AS n FROM batch_results WHERE batch_id = %(b)s
), input AS (
    INSERT INTO batch_inputs (batch_id, row_number, client_id, text)
    SELECT %(b)s, n, 'p', 'probe' FROM next
)
INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg)
SELECT %(b)s, n, 0, 0, 1, 0 FROM next
RETURNING row_number
"""


class WriteProbe(Probe):
    """Every 20 ms, writes one row of its own batch (its input and its result) and reads it back
    through the parent tables, as an upload, a runner's finish and a results page do; the slowest
    round trip."""

    def __init__(self, url: str, batch_id: int) -> None:
        super().__init__(0.02, url)
        self.batch_id = batch_id
        self.slowest = 0.0
        self.writes = 0

    def sample(self, conn: psycopg.Connection) -> None:
        started = time.perf_counter()
        row = conn.execute(_PROBE_WRITE, {"b": self.batch_id}).fetchone()[0]
        conn.execute(q("batch_results_page"), {"batch_id": self.batch_id, "after_row": row - 1, "limit": 1})
        self.slowest = max(self.slowest, time.perf_counter() - started)
        self.writes += 1


def _wal(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def _purge(
    url: str, conn: psycopg.Connection, ids: list[int], live: int, probe_batch: int
) -> dict[str, float]:
    """Expire ``ids``, then purge and reap in housekeeping turns until they are gone; the figures."""
    with psycopg.connect(url, autocommit=True) as reaper:
        reaper.execute("SELECT pg_advisory_lock(%s)", (REAPER_LOCK_KEY,))
        conn.execute("CHECKPOINT")
        with StallWatch(url, live) as stall, WriteProbe(url, probe_batch) as probe:
            time.sleep(1)
            before = _wal(conn)
            started = time.perf_counter()
            conn.execute(
                "UPDATE batches SET completed_at = now() - interval '2 days', "
                "expires_after = interval '1 day' WHERE id = ANY(%s)",
                (ids,),
            )
            turns = 0
            while conn.execute("SELECT count(*) FROM batches WHERE id = ANY(%s)", (ids,)).fetchone()[0]:
                batches.purge(reaper, 0)
                batches.reap(reaper, REAP_BUDGET_SECONDS)
                turns += 1
            seconds = time.perf_counter() - started
            wal = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint", (before,)
            ).fetchone()[0]
            time.sleep(1)
        reaper.execute("SELECT pg_advisory_unlock(%s)", (REAPER_LOCK_KEY,))
    return {
        "seconds": seconds,
        "wal_bytes": wal,
        "turns": turns,
        "stall_s": stall.longest,
        "slowest_probe_s": probe.slowest,
        "probe_writes": probe.writes,
    }


def run(rows: int = 100_000) -> dict[str, object]:
    """Both ways, on one cluster, with two runners scoring throughout."""
    figures: dict[str, object] = {"rows": rows}
    with cluster() as url, psycopg.connect(url, autocommit=True) as conn:
        live = add_batch(conn, LIVE_BATCH, 2_000_000)
        probe_batch = _batch(conn, 0)  # kept: the probe writes its results
        with runners(url, 2, RELEASE_EXPIRED_SECONDS="1", SCORER="fast"):
            time.sleep(3)
            with StallWatch(url, live) as quiet, WriteProbe(url, probe_batch) as probe:
                time.sleep(5)
            figures["quiet"] = {"stall_s": quiet.longest, "slowest_probe_s": probe.slowest}

            # As rows: a kept batch (no expiry) shares the first nine's partition, so it cannot go
            # whole, and the tenth is alone in a range still open.
            _align(conn)
            _batch(conn, 10)
            ids = [_batch(conn, rows) for _ in range(BATCHES)]
            conn.execute("ANALYZE")
            figures["rows_way"] = _purge(url, conn, ids, live, probe_batch)
            figures["rows_way"]["batches"] = len(ids)

            # As partitions: the ten fill one range exactly.
            _align(conn)
            ids = [_batch(conn, rows) for _ in range(BATCHES)]  # its last id closes the range
            conn.execute("ANALYZE")
            figures["drop_way"] = _purge(url, conn, ids, live, probe_batch)
            figures["drop_way"]["batches"] = len(ids)
    return figures


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def row(f: dict) -> Row:
    """The figures as a row of ``make bench``'s table."""
    old, new, quiet = f["rows_way"], f["drop_way"], f["quiet"]
    mib = 2**20
    return (
        f"purge of 10 expired batches × {f['rows']:,} results while 2 runners score: rows vs. partition",
        f"reaped as rows, 5,000 keys a step: {old['seconds']:.2f} s, {old['wal_bytes'] / mib:.1f} MiB WAL, "
        f"longest pause {_ms(old['stall_s'])}, slowest write+read of results {_ms(old['slowest_probe_s'])} "
        f"(none purging: {_ms(quiet['stall_s'])}, {_ms(quiet['slowest_probe_s'])})",
        f"DETACH CONCURRENTLY + DROP: **{new['seconds']:.2f} s**, **{new['wal_bytes'] / mib:.1f} MiB** "
        f"of WAL, longest pause {_ms(new['stall_s'])}, slowest write+read {_ms(new['slowest_probe_s'])}",
        "less time and WAL; pauses no longer",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.retention")
    parser.add_argument("--rows", type=int, default=100_000, help="results per purged batch")
    print(json.dumps(run(parser.parse_args().rows), indent=2))
