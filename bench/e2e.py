"""End to end: upload -> completed, with 1, 2 and 4 runner processes, against
bare loops of polarity_scores over the same texts measured in the same run."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import psycopg

from bench.data import texts as make_texts
from jobrunner.embedded_postgres import EmbeddedPostgres
from jobrunner.migrations import migrate

REPO = Path(__file__).resolve().parents[1]


def _loop(args: tuple[str, list[str]]) -> int:
    scorer, items = args
    if scorer == "package":
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        polarity = SentimentIntensityAnalyzer().polarity_scores
    else:
        from jobrunner.vader_fast import FastVader

        polarity = FastVader().polarity_scores
    for item in items:
        polarity(item)
    return len(items)


def bare_loop_rate(scorer: str, items: list[str], processes: int) -> float:
    """Rows/s of a bare polarity_scores loop split over ``processes`` processes."""
    parts = [items[i::processes] for i in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        pool.map(_loop, [(scorer, parts[0][:50])] * processes)  # warm up: imports, lexicon
        started = time.perf_counter()
        pool.map(_loop, [(scorer, part) for part in parts])
        return len(items) / (time.perf_counter() - started)


def _csv(items: list[str]) -> bytes:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "text"])
    writer.writerows((f"r{i}", t) for i, t in enumerate(items))
    return buffer.getvalue().encode()


def pipeline_rate(url: str, body: bytes, rows: int, runners: int) -> float:
    """Rows/s from the start of the upload to the batch's completion."""
    from webapp import create_app

    env = dict(
        os.environ,
        DATABASE_URL=url,
        MIGRATE_ON_START="false",
        PYTHONPATH=str(REPO),
        LOG_LEVEL="WARNING",
        POLL_SECONDS="0.2",
    )
    procs = [subprocess.Popen([sys.executable, "-m", "jobrunner"], env=env, cwd=REPO) for _ in range(runners)]
    app = create_app({"database_url": url, "migrate_on_start": False})
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM runners").fetchone()[0] < runners:
                assert time.monotonic() < deadline, "runners did not start"
                time.sleep(0.05)
            started = time.perf_counter()
            answer = app.test_client().post("/batch/upload", data=body, content_type="text/csv").get_json()
            while True:
                status = conn.execute(
                    "SELECT status FROM batches WHERE public_id = %s", (answer["batch_id"],)
                ).fetchone()[0]
                if status != "processing":
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            conn.execute("DELETE FROM batch_results; DELETE FROM batches;")
        return rows / elapsed
    finally:
        app.extensions["db_pool"].close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def run(rows: int, repeat: int = 3) -> dict:
    items = make_texts("review", rows, seed=7)
    body = _csv(items)
    cores = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    cluster = EmbeddedPostgres(workdir, port=5432)
    url = cluster.start()
    migrate(url)
    try:
        result: dict = {"rows": rows, "cores": cores, "baseline": {}, "pipeline": {}}
        for processes in sorted({1, cores}):
            for scorer in ("package", "fast"):
                result["baseline"][(scorer, processes)] = statistics.median(
                    bare_loop_rate(scorer, items, processes) for _ in range(repeat)
                )
        for runners in sorted({1, 2, 4, cores}):
            result["pipeline"][runners] = statistics.median(
                pipeline_rate(url, body, rows, runners) for _ in range(repeat)
            )
        return result
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
