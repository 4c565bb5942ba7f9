"""Upload ingest: rows/s against a bare psycopg COPY of the same bytes, and the
web worker's memory during a large upload.

``python -m bench.upload [--rows N] [--repeat R]`` starts its own PostgreSQL
and a one-worker gunicorn, uploads the same file R times, and prints medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.data import write_csv
from jobrunner.embedded_postgres import EmbeddedPostgres
from jobrunner.migrations import migrate

REPO = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def baseline_copy(url: str, path: Path) -> float:
    """Seconds for psycopg to COPY the file's bytes into an equivalent table."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE copy_baseline (id text, text text)")
        started = time.perf_counter()
        with (
            conn.cursor().copy("COPY copy_baseline FROM STDIN (FORMAT csv, HEADER)") as copy,
            path.open("rb") as f,
        ):
            while block := f.read(64 * 1024):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - started


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def upload(base: str, path: Path, pid: int) -> tuple[float, int]:
    """Seconds for one upload and the worker's peak RSS (KiB) during it."""
    peak = rss_kib(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    with path.open("rb") as handle:
        answer = requests.post(
            f"{base}/batch/upload", data=handle, headers={"Content-Type": "text/csv"}, timeout=600
        )
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    answer.raise_for_status()
    return elapsed, peak


def run(rows: int, repeat: int, data_dir: Path) -> dict[str, float]:
    """Upload a ``rows``-row review file ``repeat`` times; medians and the peak memory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = write_csv(data_dir / f"review-{rows}.csv", "review", rows)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    cluster = EmbeddedPostgres(workdir, port=5432)
    url = cluster.start()
    migrate(url)
    port = 18000 + os.getpid() % 1000
    env = dict(
        os.environ,
        DATABASE_URL=url,
        WEB_CONCURRENCY="1",
        PYTHONPATH=str(REPO),
        MIGRATE_ON_START="false",
        LOG_LEVEL="WARNING",
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:webapp.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "/dev/null",
            "webapp:create_app()",
        ],
        env=env,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/batch/x", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        pid = worker_pid(web.pid)
        # Warm the worker (pool, imports) with a small upload before the idle reading.
        small = write_csv(data_dir / "review-1000.csv", "review", 1000)
        upload(base, small, pid)
        idle = rss_kib(pid)
        ours, peaks, copies = [], [], []
        for _ in range(repeat):
            copies.append(baseline_copy(url, path))
            elapsed, peak = upload(base, path, pid)
            ours.append(elapsed)
            peaks.append(peak)
        result = {
            "rows": rows,
            "file_mb": path.stat().st_size / 1e6,
            "copy_rows_per_s": rows / statistics.median(copies),
            "upload_rows_per_s": rows / statistics.median(ours),
            "idle_rss_mb": idle / 1024,
            "peak_rss_growth_mb": (max(peaks) - idle) / 1024,
        }
        result["ratio"] = result["upload_rows_per_s"] / result["copy_rows_per_s"]
        return result
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


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
