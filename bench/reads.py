"""Reading at scale: result pages deep in a 1,000,000-row batch, the full
export, status polling under load, and a small batch's wait behind a big one.

The 1,000,000 rows and results are written straight into ``batch_inputs`` and
``batch_results`` with SQL (scoring them first would add minutes and measure
nothing here); every read goes through gunicorn and the real endpoints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests
from psycopg import sql

from bench import Row
from bench.data import texts as make_texts
from bench.e2e import _csv
from bench.service import PeakRss, cluster, gunicorn, rss_kib, runners, worker_pids

FABRICATE_BATCH = """
INSERT INTO batches (public_id, status, total_count, processed_count, positive_count,
                     chunk_size, started_at, completed_at)
VALUES (%(public_id)s, 'completed', %(rows)s, %(rows)s, %(rows)s, 100, now(), now())
RETURNING id
"""
FABRICATE_INPUTS = """
INSERT INTO batch_inputs (batch_id, row_number, line_number, client_id, text)
SELECT %(batch_id)s, g, g + 1, 'r' || g,
       md5(g::text) || ', the product arrived on time and I would "buy" it again'
FROM generate_series(1, %(rows)s) AS g
"""
# Scores spread over [-1, 1] (a fixed permutation of the rows), labelled by VADER's thresholds
# (vader_label), so the pages of one sentiment and in score order are as long and as mixed as real ones.
FABRICATE_RESULTS = """
INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg)
SELECT %(batch_id)s, g, c, 0.31, 0.69, 0.0
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT ((g::bigint * 7919) %% 20001 - 10000) / 10000.0 AS c) AS score
"""
FABRICATE_COUNTS = """
UPDATE batches AS b
SET positive_count = n.positive, negative_count = n.negative, neutral_count = n.neutral
FROM (SELECT count(*) FILTER (WHERE vader_label(compound) = 'positive') AS positive,
             count(*) FILTER (WHERE vader_label(compound) = 'negative') AS negative,
             count(*) FILTER (WHERE vader_label(compound) = 'neutral') AS neutral
      FROM batch_results WHERE batch_id = %(batch_id)s) AS n
WHERE b.id = %(batch_id)s
"""


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append((time.perf_counter() - started) * 1e3)
    return statistics.median(runs)


#: The lists that are not numbered densely: page P starts from a checkpoint (core/batches/ordering.py).
ORDERED = {"sentiment=positive": "sentiment=positive", "order=-compound": "order=-compound"}


def _deep_pages(http: requests.Session, base: str, public_id: str, query: str) -> dict:
    """Page 1, and the page as deep into this list as page 10,000 is into 1,000,000 rows: the first
    request (which writes the list's checkpoints) and then the median."""
    url = f"{base}/batch/{public_id}/results?{query}&per_page=50"
    started = time.perf_counter()
    while (first := http.get(url)).status_code == 503:  # its sort keys, written a step per request
        time.sleep(float(first.headers.get("Retry-After", "1")))
    keys_ms = (time.perf_counter() - started) * 1e3
    first.raise_for_status()
    total = first.json()["total_results"] if "sentiment" in query else None
    length = total if total is not None else http.get(f"{base}/batch/{public_id}").json()["total_count"]
    deep_page = max(2, length // 100)
    deep = f"{url}&page={deep_page}"
    started = time.perf_counter()
    answer = http.get(deep)
    first_deep_ms = (time.perf_counter() - started) * 1e3
    answer.raise_for_status()
    for _ in range(20):
        http.get(url)
        http.get(deep)
    return {
        "page": deep_page,
        "first_ms": _median_ms(lambda: http.get(url).raise_for_status(), 200),
        "deep_ms": _median_ms(lambda: http.get(deep).raise_for_status(), 200),
        "first_deep_ms": first_deep_ms,
        "keys_ms": keys_ms,
    }


def pages_and_export(rows: int, repeat: int = 3) -> dict:
    public_id = "batch-" + "b" * 32
    deep_page = rows // 100  # page 10,000 of a 1,000,000-row batch at 50 per page
    with cluster() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            batch_id = conn.execute(FABRICATE_BATCH, {"public_id": public_id, "rows": rows}).fetchone()[0]
            conn.execute("SELECT batch_partitions_ensure(%s)", (batch_id,))
            conn.execute(FABRICATE_INPUTS, {"batch_id": batch_id, "rows": rows})
            conn.execute(FABRICATE_RESULTS, {"batch_id": batch_id, "rows": rows})
            conn.execute(FABRICATE_COUNTS, {"batch_id": batch_id})
            conn.execute("ANALYZE batch_inputs, batch_results")

            def offset_query() -> None:
                conn.execute("SELECT count(*) FROM batch_results WHERE batch_id = %s", (batch_id,)).fetchone()
                conn.execute(
                    "SELECT r.row_number, i.client_id, i.text, vader_label(r.compound), abs(r.compound), "
                    "r.compound FROM batch_results AS r "
                    "JOIN batch_inputs AS i ON i.batch_id = r.batch_id AND i.row_number = r.row_number "
                    "WHERE r.batch_id = %s ORDER BY r.row_number OFFSET %s LIMIT 50",
                    (batch_id, (deep_page - 1) * 50),
                ).fetchall()

            def copy_out() -> None:
                statement = sql.SQL(
                    "COPY (SELECT i.client_id, i.text, vader_label(r.compound), abs(r.compound), r.compound, "
                    "r.pos, r.neu, r.neg, r.error FROM batch_results AS r "
                    "JOIN batch_inputs AS i ON i.batch_id = {batch_id} AND i.row_number = r.row_number "
                    "WHERE r.batch_id = {batch_id} ORDER BY r.row_number) TO STDOUT (FORMAT csv)"
                ).format(batch_id=sql.Literal(batch_id))
                with conn.cursor().copy(statement) as copy:
                    for _ in copy:
                        pass

            offset_ms = _median_ms(offset_query, 5)
            copy_ms = _median_ms(copy_out, repeat)

        with gunicorn(url) as (base, master), requests.Session() as http:
            first = f"{base}/batch/{public_id}/results?page=1&per_page=50"
            deep = f"{base}/batch/{public_id}/results?page={deep_page}&per_page=50"
            assert http.get(deep).json()["results"][0]["row"] == (deep_page - 1) * 50 + 1
            for _ in range(20):  # warm caches and connections alike
                http.get(first)
                http.get(deep)
            first_ms = _median_ms(lambda: http.get(first).raise_for_status(), 200)
            deep_ms = _median_ms(lambda: http.get(deep).raise_for_status(), 200)
            ordered = {name: _deep_pages(http, base, public_id, query) for name, query in ORDERED.items()}
            pid = worker_pids(master)[0]
            idle = rss_kib(pid)
            exports, peaks = [], []
            for _ in range(repeat):
                with PeakRss(pid) as memory:
                    started = time.perf_counter()
                    with http.get(f"{base}/batch/{public_id}/results.csv", stream=True) as response:
                        size = sum(len(block) for block in response.iter_content(1 << 16))
                    exports.append(time.perf_counter() - started)
                peaks.append(memory.peak)
    return {
        "rows": rows,
        "deep_page": deep_page,
        "first_ms": first_ms,
        "deep_ms": deep_ms,
        "offset_ms": offset_ms,
        "ordered": ordered,
        "export_rows_per_s": rows / statistics.median(exports),
        "copy_rows_per_s": rows / (copy_ms / 1e3),
        "export_mb": size / 1e6,
        "export_rss_growth_mb": (max(peaks) - idle) / 1024,
    }


def _poll(http: requests.Session, url: str, until: float, latencies: list[float], errors: list[int]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = http.get(url, timeout=30)
            if response.status_code != 200:
                errors.append(response.status_code)
        except requests.RequestException:
            errors.append(0)
        latencies.append((time.perf_counter() - started) * 1e3)


def pollers(url: str, base: str, public_id: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    until = time.monotonic() + seconds
    sessions = [requests.Session() for _ in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        for http in sessions:
            pool.submit(_poll, http, f"{base}/batch/{public_id}", until, latencies, errors)
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": len(errors),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[int(len(ordered) * 0.99)],
    }


def load_and_fairness(big_rows: int, clients: int = 50, seconds: float = 10.0) -> dict:
    """Status polling idle and while runners work; then a 100-row batch's wait behind a big one."""
    big = _csv(make_texts("review", big_rows, seed=9))
    small = _csv(make_texts("review", 100, seed=10))
    with cluster() as url, gunicorn(url, workers=2) as (base, _), requests.Session() as http:
        idle_id = http.post(f"{base}/batch/upload", data=small, headers={"Content-Type": "text/csv"}).json()
        idle = pollers(url, base, idle_id["batch_id"], clients, seconds)
        with runners(url, 2):
            big_id = http.post(f"{base}/batch/upload", data=big, headers={"Content-Type": "text/csv"}).json()
            busy = pollers(url, base, big_id["batch_id"], clients, seconds)
            status = http.get(f"{base}/batch/{big_id['batch_id']}").json()
            assert status["status"] == "processing", "the big batch finished too soon to measure fairness"
            started = time.perf_counter()
            small_id = http.post(
                f"{base}/batch/upload", data=small, headers={"Content-Type": "text/csv"}
            ).json()
            while http.get(f"{base}/batch/{small_id['batch_id']}").json()["status"] == "processing":
                time.sleep(0.05)
            small_seconds = time.perf_counter() - started
            big_after = http.get(f"{base}/batch/{big_id['batch_id']}").json()
    return {
        "idle": idle,
        "busy": busy,
        "small_seconds": small_seconds,
        "big_done_percent": big_after["progress_percent"],
        "big_rows": big_rows,
    }


def page_rows(r: dict) -> list[Row]:
    """``make bench``'s rows for :func:`pages_and_export`: deep pages, OFFSET, the export."""
    table: list[Row] = [
        (
            f"results page {r['deep_page']:,} (per_page 50) of a {r['rows']:,}-row batch",
            f"page 1 of the same batch: {r['first_ms']:.2f} ms",
            f"**{r['deep_ms'] / r['first_ms']:.2f}×** its latency ({r['deep_ms']:.2f} ms)",
            "≤ 1.5×",
        )
    ]
    for name, o in r["ordered"].items():
        table.append(
            (
                f"results `?{name}` page {o['page']:,} (per_page 50)",
                f"page 1 of the same list: {o['first_ms']:.2f} ms",
                f"**{o['deep_ms'] / o['first_ms']:.2f}×** its latency ({o['deep_ms']:.2f} ms); the "
                f"first deep request, which writes the list's checkpoints: {o['first_deep_ms']:.0f} ms; "
                f"the batch's sort keys, written by the first requests (503 until done): "
                f"{o['keys_ms']:.0f} ms",
                "≤ 1.5×",
            )
        )
    table.append(
        (
            "same page",
            f"OFFSET … LIMIT 50 + count(*) run directly: {r['offset_ms']:.1f} ms",
            f"**{r['offset_ms'] / r['deep_ms']:.0f}× faster** ({r['deep_ms']:.2f} ms over HTTP)",
            "≥ 10× faster",
        )
    )
    table.append(
        (
            f"full CSV export of {r['rows']:,} results ({r['export_mb']:.0f} MB)",
            f"COPY (SELECT …) TO STDOUT of the same rows: {r['copy_rows_per_s']:,.0f} rows/s",
            f"**{r['export_rows_per_s'] / r['copy_rows_per_s']:.2f}×** "
            f"({r['export_rows_per_s']:,.0f} rows/s); "
            f"web worker peak +{r['export_rss_growth_mb']:.1f} MB",
            "≥ 0.5×, constant memory",
        )
    )
    return table


def load_rows(load: dict) -> list[Row]:
    """``make bench``'s rows for :func:`load_and_fairness`."""
    idle, busy = load["idle"], load["busy"]
    return [
        (
            "`GET /batch/<id>` under 50 concurrent pollers while 2 runners work",
            f"the same endpoint idle: p50 {idle['p50']:.1f} ms, p99 {idle['p99']:.1f} ms "
            f"({idle['requests']:,} requests, {idle['errors']} errors)",
            f"p50 **{busy['p50']:.1f} ms**, p99 **{busy['p99']:.1f} ms** ({busy['requests']:,} requests, "
            f"**{busy['errors']} errors**)",
            "p50, p99 reported; 0 errors",
        ),
        (
            f"a 100-row batch uploaded while a {load['big_rows']:,}-row batch runs",
            "—",
            f"completed in **{load['small_seconds']:.2f} s** "
            f"(the big batch was {load['big_done_percent']}% done)",
            "seconds (fairness)",
        ),
    ]
