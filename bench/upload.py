"""Upload ingest: rows/s against a bare psycopg COPY of the same bytes, and the
web worker's memory during a large upload.

``python -m bench.upload [--rows N] [--repeat R]`` starts its own PostgreSQL
and a one-worker gunicorn, uploads the same file R times, and prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import psycopg
import requests

from bench import Row
from bench.data import write_csv
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


def upload(base: str, path: Path, pid: int) -> tuple[float, int]:
    """Seconds for one upload and the worker's peak RSS (KiB) during it."""
    with PeakRss(pid) as memory, path.open("rb") as handle:
        started = time.perf_counter()
        answer = requests.post(
            f"{base}/batch/upload", data=handle, headers={"Content-Type": "text/csv"}, timeout=600
        )
        elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, memory.peak


def run(rows: int, repeat: int, data_dir: Path) -> dict[str, float]:
    """Upload a ``rows``-row review file ``repeat`` times; medians and the peak memory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = write_csv(data_dir / f"review-{rows}.csv", "review", rows)
    with cluster() as url, gunicorn(url) as (base, master):
        pid = worker_pids(master)[0]
        # Warm the worker (pool, imports) with a small upload before the idle reading.
        upload(base, write_csv(data_dir / "review-1000.csv", "review", 1000), pid)
        idle = rss_kib(pid)
        ours, peaks, copies, logged_copies = [], [], [], []
        for _ in range(repeat):
            copies.append(baseline_copy(url, path, logged=False))
            logged_copies.append(baseline_copy(url, path, logged=True))
            elapsed, peak = upload(base, path, pid)
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
    args = parser.parse_args(argv)
    for key, value in run(args.rows, args.repeat, args.data_dir).items():
        print(f"{key:>22}: {value:,.2f}")


if __name__ == "__main__":
    main()
