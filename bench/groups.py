"""A finished batch's summary by group (``GET /batch/<id>/summary?by=product``) over ``rows``
results with ``groups`` distinct values of the column, against a plain ``count(*)`` of the same
rows in the same run.

One cluster; one finished batch whose inputs keep two columns (``product``: ``groups`` distinct
values, skewed so that a few are large and most are small; ``channel``: three), and whose results
carry four-decimal compound scores spread over [-1, 1] (every hundredth row failed), written
straight into its tables, deterministically, and analysed. Timed, medians of 3 after one warm-up
each: the baseline ``SELECT count(*)`` over the batch's results; the batch's own summary (mean and
histogram, :func:`core.batches.summaries.keep`) for scale; the groups counted and kept
(:func:`core.batches.groups.read`, the kept rows deleted before each turn); later reads of the
kept groups with ``limit`` 50 and 1,000.

Run alone: ``python -m bench.groups [--rows N] [--groups G]``.
"""

from __future__ import annotations

import argparse
import json

import psycopg

from bench import Row
from bench.purge import add_batch
from bench.service import cluster
from bench.summary import _median_seconds, _ms
from core.batches import get, groups, summaries

#: A finished batch of %(rows)s rows; product k = floor(G * u^2) for u spread over [0, 1), by n.
GROUPED_BATCH = (
    """
    INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, neutral_count,
                         failed_count, completed_at, field_names)
    VALUES (%(public_id)s, 100, 'completed_with_errors', %(rows)s, %(rows)s - %(rows)s / 100,
            %(rows)s - %(rows)s / 100, %(rows)s / 100, now(), ARRAY['product', 'channel'])
    RETURNING id
    """,
    """
    INSERT INTO batch_inputs (batch_id, row_number, client_id, text, fields)
    SELECT %(batch_id)s, n, 'r' || n, 'a review',
           ARRAY['product ' || floor(%(groups)s * power(((n::bigint * 7919) %% 1000003) / 1000003.0, 2)),
                 (ARRAY['email', 'chat', 'phone'])[1 + n %% 3]]
    FROM generate_series(1, %(rows)s) AS n
    """,
    """
    INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg, error)
    SELECT %(batch_id)s, n, c, p, p, p, CASE WHEN c IS NULL THEN 'failed' END
    FROM generate_series(1, %(rows)s) AS n,
         LATERAL (SELECT CASE WHEN n %% 100 <> 0
                         THEN round(((n::bigint * 104729) %% 20001) / 10000.0 - 1, 4)::float8 END AS c) AS s,
         LATERAL (SELECT CASE WHEN s.c IS NOT NULL THEN 0.5::float8 END AS p) AS t
    """,
)

_COUNT = "SELECT count(*) FROM batch_results WHERE batch_id = %s"


def run(rows: int = 1_000_000, distinct: int = 10_000) -> dict[str, float | int]:
    """The timings, in seconds, on one cluster."""
    with cluster() as url, psycopg.connect(url, autocommit=True) as conn:
        statements = tuple(s.replace("%(groups)s", str(int(distinct))) for s in GROUPED_BATCH)
        batch_id = add_batch(conn, statements, rows)
        conn.execute("VACUUM ANALYZE")
        public_id = conn.execute("SELECT public_id FROM batches WHERE id = %s", (batch_id,)).fetchone()[0]
        batch = get(conn, public_id)
        count = _median_seconds(lambda: conn.execute(_COUNT, (batch_id,)).fetchone())

        def forget_summary() -> None:
            conn.execute("DELETE FROM batch_summaries WHERE batch_id = %s", (batch_id,))

        def forget_groups() -> None:
            conn.execute("DELETE FROM batch_group_summaries WHERE batch_id = %s", (batch_id,))

        summary = _median_seconds(lambda: summaries.keep(conn, batch_id), forget_summary)
        counted = _median_seconds(lambda: groups.read(conn, batch, "product"), forget_groups)
        kept_50 = _median_seconds(lambda: groups.read(conn, batch, "product", 50))
        kept_1000 = _median_seconds(lambda: groups.read(conn, batch, "product", 1000))
        answer = groups.read(conn, batch, "product", 1000)
        assert answer is not None
        found = len(answer.groups) + answer.other.groups
        assert sum(g.row_count for g in answer.groups) + answer.other.row_count == rows
    return {
        "rows": rows,
        "groups": found,
        "count_s": count,
        "summary_s": summary,
        "groups_s": counted,
        "kept_50_s": kept_50,
        "kept_1000_s": kept_1000,
    }


def rows(f: dict) -> list[Row]:
    """The figures as rows of ``make bench``'s table."""
    return [
        (
            f"a finished batch's summary by a kept column (`/summary?by=`) of {f['rows']:,} results with "
            f"{f['groups']:,} distinct values, counted and kept once",
            f"count(*) over the same rows: {_ms(f['count_s'])}",
            f"**{_ms(f['groups_s'])}** ({f['groups_s'] / f['count_s']:.1f}× the count; the batch's own "
            f"mean and histogram: {_ms(f['summary_s'])}); later reads, kept: {_ms(f['kept_50_s'])} "
            f"(limit 50), {_ms(f['kept_1000_s'])} (limit 1,000)",
            "one pass: a small multiple of a count; later reads cost nothing",
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.groups")
    parser.add_argument("--rows", type=int, default=1_000_000, help="results in the batch")
    parser.add_argument("--groups", type=int, default=10_000, help="distinct values of the column")
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.rows, arguments.groups), indent=2))
