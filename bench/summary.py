"""A finished batch's summary of compound scores (mean and 20-bin histogram) over ``rows``
results, against a plain ``count(*)`` of the same rows in the same run.

One cluster; one finished batch whose results carry four-decimal compound scores spread over
[-1, 1] (every hundredth row failed, with no score), written straight into its tables and
analysed. Timed, medians of 3 after one warm-up each: the baseline ``SELECT count(*)`` over the
batch's scored rows; the summary counted and kept (:func:`core.batches.summaries.keep`, its kept
row deleted before each turn); and a later read of the kept summary
(:func:`core.batches.summaries.read`).

Run alone: ``python -m bench.summary [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import psycopg

from bench import Row
from bench.purge import add_batch
from bench.service import cluster
from core.batches import get, summaries

#: A finished batch of %(rows)s results: compounds spread over [-1, 1], every hundredth failed.
SCORED_BATCH = (
    """
    INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, neutral_count,
                         failed_count, completed_at)
    VALUES (%(public_id)s, 100, 'completed_with_errors', %(rows)s, %(rows)s - %(rows)s / 100,
            %(rows)s - %(rows)s / 100, %(rows)s / 100, now())
    RETURNING id
    """,
    """
    INSERT INTO batch_inputs (batch_id, row_number, client_id, text)
    SELECT %(batch_id)s, n, 'r' || n, 'a review' FROM generate_series(1, %(rows)s) AS n
    """,
    """
    INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg, error)
    SELECT %(batch_id)s, n, c, p, p, p, CASE WHEN c IS NULL THEN 'failed' END
    FROM generate_series(1, %(rows)s) AS n,
         LATERAL (SELECT CASE WHEN n %% 100 <> 0 THEN round((random() * 2 - 1)::numeric, 4)::float8 END
                  AS c) AS s,
         LATERAL (SELECT CASE WHEN s.c IS NOT NULL THEN 0.5::float8 END AS p) AS t
    """,
)

_COUNT = "SELECT count(*) FROM batch_results WHERE batch_id = %s AND compound IS NOT NULL"
TURNS = 3


def _median_seconds(turn: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    took = []
    for n in range(TURNS + 1):
        before()
        started = time.perf_counter()
        turn()
        if n:  # the first is a warm-up
            took.append(time.perf_counter() - started)
    return statistics.median(took)


def run(rows: int = 1_000_000) -> dict[str, float | int]:
    """The three timings, in seconds, on one cluster."""
    with cluster() as url, psycopg.connect(url, autocommit=True) as conn:
        batch_id = add_batch(conn, SCORED_BATCH, rows)
        conn.execute("VACUUM ANALYZE")
        public_id = conn.execute("SELECT public_id FROM batches WHERE id = %s", (batch_id,)).fetchone()[0]
        batch = get(conn, public_id)
        count = _median_seconds(lambda: conn.execute(_COUNT, (batch_id,)).fetchone())

        def forget() -> None:
            conn.execute("DELETE FROM batch_summaries WHERE batch_id = %s", (batch_id,))

        counted = _median_seconds(lambda: summaries.keep(conn, batch_id), forget)
        kept = _median_seconds(lambda: summaries.read(conn, batch))
        scored = conn.execute(_COUNT, (batch_id,)).fetchone()[0]
        assert sum(summaries.read(conn, batch).histogram) == scored
    return {"rows": rows, "count_s": count, "summary_s": counted, "kept_read_s": kept}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.2f} ms"


def rows(f: dict) -> list[Row]:
    """The figures as rows of ``make bench``'s table."""
    return [
        (
            f"a finished batch's summary (mean_compound, 20-bin histogram) of {f['rows']:,} results, "
            "counted and kept once",
            f"count(*) over the same rows: {_ms(f['count_s'])}",
            f"**{_ms(f['summary_s'])}** ({f['summary_s'] / f['count_s']:.1f}× the count); "
            f"later reads, kept: {_ms(f['kept_read_s'])}",
            "one pass: a small multiple of a count; later reads cost nothing",
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.summary")
    parser.add_argument("--rows", type=int, default=1_000_000, help="results in the batch")
    print(json.dumps(run(parser.parse_args().rows), indent=2))
