"""/metrics: counters summed over gunicorn workers, service figures from the database,
and a runner's own metrics on its port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import requests

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO, WebServer, free_port
from tests.integration.helpers import score_everything


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in:\n{text}"
    return float(match.group(1))


def test_metrics_in_process(client, upload, db):
    upload(make_csv(sample_texts(250)))
    client.post("/batch/upload", data=b"", content_type="text/csv")
    score_everything(db)
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "sentiment_batches", 'status="completed"') == 1
    assert metric(text, "sentiment_rows", 'outcome="scored"') == 250
    assert metric(text, "sentiment_queue_chunks", 'state="ready"') == 0
    assert metric(text, "sentiment_uploads_total", 'outcome="rejected"') >= 1


def test_dead_tuples_per_table(client, upload, db):
    """The queue churns: a claim and a finish update each chunk, and a completed batch's chunks
    are deleted. The old versions show as dead tuples of chunks until vacuum (PostgreSQL's
    statistics arrive within a second or so); at least one per chunk, the deleted last versions,
    which page pruning leaves counted until vacuum."""
    upload(make_csv(sample_texts(3000)))
    chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert chunks >= 30
    score_everything(db)
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0

    def dead_in_queue() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return metric(text, "sentiment_dead_tuples", 'table="chunks"')

    assert wait_for(lambda: dead_in_queue() >= chunks, timeout=30)
    # Inputs, results, errors and sort keys are written once, never updated: no dead versions.
    # (batches has some, from its counters' updates, as many as page pruning has left.)
    text = client.get("/metrics").get_data(as_text=True)
    for table in ("batch_inputs", "batch_results", "batch_row_errors", "batch_result_keys"):
        assert metric(text, "sentiment_dead_tuples", f'table="{table}"') == 0, table
    # Deleted rows are dead versions too; a partitioned table's are its partitions', summed.
    db.execute("DELETE FROM batch_results WHERE row_number <= 10")

    def dead_results() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return metric(text, "sentiment_dead_tuples", 'table="batch_results"')

    assert wait_for(dead_results, timeout=30) == 10


def served_by(web: WebServer, request: str) -> list[int]:
    """The process ids of the workers that answered ``request`` ("POST /batch/upload 202"), one per
    answer, from the request log (its text lines name the process)."""
    line = re.compile(rf" (\d+) webapp\.request_log: {re.escape(request)} ")
    return [int(pid) for pid in line.findall(web.logfile.read_text(errors="replace"))]


def test_counters_are_summed_over_gunicorn_workers(database_url, tmp_path):
    web = WebServer(database_url, tmp_path, WEB_CONCURRENCY="3", WEB_THREADS="1")
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(REPO), MIGRATE_ON_START="false")
    runner_log = (tmp_path / "runner.log").open("wb")
    runner_port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "--metrics-port", str(runner_port)],
        env=env,
        cwd=REPO,
        stdout=runner_log,
        stderr=subprocess.STDOUT,
    )
    base = web.base
    try:
        body = make_csv(sample_texts(120))
        uploads = 0
        # A new connection each time, so the uploads spread over the workers: at least nine, and
        # until two workers at least have taken some, so no worker's own counters hold them all.
        accepted = "POST /batch/upload 202"
        while uploads < 9 or len(set(served_by(web, accepted))) < 2:
            assert uploads < 60, f"every upload went to one worker: {served_by(web, accepted)}"
            answer = requests.post(
                f"{base}/batch/upload",
                data=body,
                headers={"Content-Type": "text/csv", "Connection": "close"},
                timeout=30,
            )
            assert answer.status_code == 202
            uploads += 1
        assert len(served_by(web, accepted)) == uploads
        for _ in range(6):
            text = requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
            assert metric(text, "sentiment_uploads_total", 'outcome="accepted"') == uploads
            assert metric(text, "sentiment_rows_ingested_total") == uploads * 120
        wait_for(
            lambda: (
                metric(
                    requests.get(f"{base}/metrics", timeout=10).text,
                    "sentiment_batches",
                    'status="completed"',
                )
                == uploads
            ),
            timeout=60,
        )
        own = requests.get(f"http://127.0.0.1:{runner_port}/metrics", timeout=10).text
        assert metric(own, "sentiment_runner_chunks_total", 'outcome="done"') == 2 * uploads
        assert metric(own, "sentiment_runner_chunk_seconds_count") == 2 * uploads
        assert metric(own, "sentiment_runner_rows_total", 'outcome="scored"') == uploads * 120
    finally:
        web.stop()
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
        runner_log.close()
