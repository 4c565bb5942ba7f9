"""Upload ingest: rows/s against a bare psycopg COPY of the same bytes, and the
web worker's memory during a large upload.

``python -m bench.upload [--rows N] [--repeat R] [--parser python]`` starts its
own PostgreSQL and a one-worker gunicorn, uploads the same file R times, and
prints medians. Each upload is cancelled once measured, so every repetition
starts alike: a client's later upload with batches still waiting also re-deals
their chunks' fair turns, a cost of the queue that would grow with each
repetition. Where the CPU goes, per row: the web worker's, and all of
PostgreSQL's processes' (postmaster, backends, checkpointer, ...) during the
upload and during the logged COPY.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import psycopg
import requests

from bench import Row
from bench.data import write_csv
from bench.pgcpu import children, read_stat
from bench.service import REPO, PeakRss, cluster, gunicorn, rss_kib, worker_pids


def baseline_copy(url: str, path: Path, *, logged: bool) -> float:
    """Seconds for psycopg to COPY the file's bytes into an (id, text) table.

    ``logged``: a regular table, written to the WAL like our batch_inputs
    (which must survive a crash: the queue's chunks are ranges of it). Otherwise
    a TEMP table, which skips the WAL: the cheapest place PostgreSQL can put the bytes.
    """
    kind = "TABLE" if logged else "TEMP TABLE"
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS copy_baseline; CREATE {kind} copy_baseline (id text, text text)")
        started = time.perf_counter()
        with (
            conn.cursor().copy("COPY copy_baseline FROM STDIN (FORMAT csv, HEADER)") as copy,
            path.open("rb") as f,
        ):
            while block := f.read(64 * 1024):
                copy.write(block)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE copy_baseline")
        conn.commit()
        return elapsed


def upload(base: str, path: Path, pid: int) -> tuple[float, int, str]:
    """Seconds for one upload, the worker's peak RSS (KiB) during it, and the batch's id."""
    with PeakRss(pid) as memory, path.open("rb") as handle:
        started = time.perf_counter()
        answer = requests.post(
            f"{base}/batch/upload", data=handle, headers={"Content-Type": "text/csv"}, timeout=600
        )
        elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, memory.peak, answer.json()["batch_id"]


def cancel(base: str, batch_id: str) -> None:
    requests.post(f"{base}/batch/{batch_id}/cancel", timeout=60).raise_for_status()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    stat = read_stat(pid)
    assert stat is not None, pid
    return stat.cpu


def postgres_seconds(postmaster: int) -> float:
    """CPU seconds of all of PostgreSQL so far: the postmaster, its live children and those it reaped."""
    stat = read_stat(postmaster)
    assert stat is not None, postmaster
    return stat.cpu + stat.reaped + sum(s.cpu for c in children(postmaster) if (s := read_stat(c)))


def run(rows: int, repeat: int, data_dir: Path) -> dict[str, float]:
    """Upload a ``rows``-row review file ``repeat`` times; medians and the peak memory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = write_csv(data_dir / f"review-{rows}.csv", "review", rows)
    with cluster() as url, gunicorn(url) as (base, master):
        pid = worker_pids(master)[0]
        with psycopg.connect(url) as conn:
            postmaster = read_stat(conn.info.backend_pid).ppid
        # Warm the worker (pool, imports) with a small upload before the idle reading.
        cancel(base, upload(base, write_csv(data_dir / "review-1000.csv", "review", 1000), pid)[2])
        idle = rss_kib(pid)
        ours, peaks, copies, logged_copies = [], [], [], []
        logged_pg, upload_pg, upload_worker = [], [], []
        for _ in range(repeat):
            copies.append(baseline_copy(url, path, logged=False))
            pg = postgres_seconds(postmaster)
            logged_copies.append(baseline_copy(url, path, logged=True))
            logged_pg.append(postgres_seconds(postmaster) - pg)
            pg, worker = postgres_seconds(postmaster), cpu_seconds(pid)
            elapsed, peak, batch_id = upload(base, path, pid)
            upload_pg.append(postgres_seconds(postmaster) - pg)
            upload_worker.append(cpu_seconds(pid) - worker)
            cancel(base, batch_id)
            ours.append(elapsed)
            peaks.append(peak)
    result = {
        "rows": rows,
        "file_mb": path.stat().st_size / 1e6,
        "copy_rows_per_s": rows / statistics.median(copies),
        "logged_copy_rows_per_s": rows / statistics.median(logged_copies),
        "upload_rows_per_s": rows / statistics.median(ours),
        "idle_rss_mb": idle / 1024,
        "peak_rss_growth_mb": (max(peaks) - idle) / 1024,
        # CPU per row (µs).
        "logged_copy_pg_us": statistics.median(logged_pg) / rows * 1e6,
        "upload_pg_us": statistics.median(upload_pg) / rows * 1e6,
        "upload_worker_us": statistics.median(upload_worker) / rows * 1e6,
    }
    result["ratio"] = result["upload_rows_per_s"] / result["copy_rows_per_s"]
    result["logged_ratio"] = result["upload_rows_per_s"] / result["logged_copy_rows_per_s"]
    return result


def rows(u: dict[str, float]) -> list[Row]:
    """``make bench``'s rows for :func:`run`: against COPY into a TEMP and a logged table, and memory."""
    return [
        (
            f"upload ingest, {u['rows']:,} review rows ({u['file_mb']:.0f} MB)",
            f"psycopg COPY of the same bytes into a TEMP table (no WAL): {u['copy_rows_per_s']:,.0f} rows/s",
            f"**{u['ratio']:.2f}×** ({u['upload_rows_per_s']:,.0f} rows/s)",
            "≥ 0.5×",
        ),
        (
            "same upload",
            "the same COPY into a regular (WAL-logged, crash-safe) table, as batch_inputs is: "
            f"{u['logged_copy_rows_per_s']:,.0f} rows/s",
            f"**{u['logged_ratio']:.2f}×**",
            "≥ 0.6×",
        ),
        (
            "where that upload's CPU goes, per row",
            f"all of PostgreSQL during the logged COPY: {u['logged_copy_pg_us']:.1f} µs",
            f"PostgreSQL **{u['upload_pg_us']:.1f} µs**, web worker **{u['upload_worker_us']:.1f} µs**",
            "breakdown",
        ),
        (
            "web worker memory during that upload",
            f"idle RSS {u['idle_rss_mb']:.0f} MB",
            f"peak **+{u['peak_rss_growth_mb']:.1f} MB**",
            "≤ +30 MB",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument(
        "--parser", choices=("c", "python"), help="the web worker's CSV parser (default: C where built)"
    )
    args = parser.parse_args(argv)
    if args.parser:
        os.environ["UPLOAD_CSV_PARSER"] = args.parser  # the gunicorn started by run() inherits it
    for key, value in run(args.rows, args.repeat, args.data_dir).items():
        print(f"{key:>22}: {value:,.2f}")


if __name__ == "__main__":
    main()
