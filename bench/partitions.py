"""An upload's latency with 100 partitions and with 10,000: what making and holding a batch's
partitions (batch_partitions_ensure, twice per upload) costs as partitions pile up.

One cluster and one one-worker gunicorn. The row tables first get 25 ranges of batch ids (100
partitions, four tables a range), the batch id sequence is set inside them, and small uploads
(``rows`` rows each, no key) are timed one after the other; then ranges are added up to 2,500
(10,000 partitions), the sequence moved to the last of them, and the same uploads timed again.
The uploads' own ranges exist before they are timed in both rounds, as the runners' making
ahead has them; each upload is cancelled once timed, so none deals more waiting chunks than the
one before. Reported: the medians' ratio.

Run alone: ``python -m bench.partitions [--uploads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
import requests

from bench import Row
from bench.data import write_csv
from bench.service import REPO, cluster, gunicorn
from bench.upload import cancel

#: Partitions of each round, four tables a range of batch_partition_span() (10) ids.
FEW, MANY = 100, 10_000
#: Ranges made per transaction while filling the catalog (each holds its new tables' locks).
RANGES_PER_TRANSACTION = 25


def _make_ranges(url: str, first: int, end: int) -> None:
    """Partitions for the ranges of batch ids from ``first`` to ``end`` (multiples of 10)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for low in range(first, end, RANGES_PER_TRANSACTION * 10):
            last = min(low + (RANGES_PER_TRANSACTION - 1) * 10, end - 10)
            with conn.transaction():
                conn.execute(
                    "SELECT batch_partitions_ensure(low) FROM generate_series(%s::bigint, %s, 10) AS low",
                    (low, last),
                )


def _partitions_and_next_id(url: str, next_id: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setval('batches_id_seq', %s, false)", (next_id,))
        return conn.execute("SELECT count(*) FROM batch_partitions").fetchone()[0]


def _timed_uploads(base: str, body: bytes, uploads: int) -> float:
    """Median seconds of ``uploads`` uploads of ``body`` (after three not timed)."""
    took = []
    for n in range(uploads + 3):
        started = time.perf_counter()
        answer = requests.post(
            f"{base}/batch/upload", data=body, headers={"Content-Type": "text/csv"}, timeout=60
        )
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        cancel(base, answer.json()["batch_id"])
        if n >= 3:
            took.append(elapsed)
    return statistics.median(took)


def run(uploads: int = 30, rows: int = 100) -> dict[str, float]:
    """Median upload seconds with FEW and with MANY partitions, and the partitions each round had."""
    (REPO / "var" / "bench").mkdir(parents=True, exist_ok=True)
    body = write_csv(REPO / "var" / "bench" / f"review-{rows}.csv", "review", rows).read_bytes()
    ids_needed = (uploads + 3) * 2 + 20  # the uploads' ids and the ranges around them
    few_end, many_end = FEW // 4 * 10, MANY // 4 * 10
    with cluster() as url, gunicorn(url) as (base, _):
        _make_ranges(url, 0, few_end)
        few_count = _partitions_and_next_id(url, few_end - ids_needed)
        few = _timed_uploads(base, body, uploads)
        _make_ranges(url, few_end, many_end)
        many_count = _partitions_and_next_id(url, many_end - ids_needed)
        many = _timed_uploads(base, body, uploads)
    return {
        "uploads": uploads,
        "rows": rows,
        "few_partitions": few_count,
        "many_partitions": many_count,
        "few_ms": few * 1000,
        "many_ms": many * 1000,
        "ratio": many / few,
    }


def rows(p: dict[str, float]) -> list[Row]:
    """``make bench``'s row for :func:`run`."""
    return [
        (
            f"upload latency ({p['rows']:.0f} rows) with {p['many_partitions']:,.0f} partitions",
            f"the same uploads with {p['few_partitions']:,.0f} partitions: {p['few_ms']:.1f} ms",
            f"**{p['ratio']:.2f}×** ({p['many_ms']:.1f} ms)",
            "≤ 1.5×",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--rows", type=int, default=100)
    args = parser.parse_args(argv)
    for key, value in run(args.uploads, args.rows).items():
        print(f"{key:>16}: {value:,.2f}")


if __name__ == "__main__":
    main()
