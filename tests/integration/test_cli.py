"""The ``sentiment`` command, as installed (the console script), against the real service: gunicorn,
runner processes and an API key. Exit codes, --wait and --out, status, results, list, a 503
retried after its Retry-After, an upload whose answer was lost retried into one batch, and the
columns and sheet an upload names."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import openpyxl
import pytest
import requests

from core.clients import create_key
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO
from tests.integration.helpers import uploads_copying
from tests.rawhttp import connect, exchange, head
from tests.scorers import POISON

SENTIMENT = str(Path(sys.executable).parent / "sentiment")
#: Bounds for the waits below: a busy machine's, never a measurement.
TIMEOUT = 180


class Cli:
    """Runs ``sentiment`` with SENTIMENT_URL and SENTIMENT_KEY set."""

    def __init__(self, url: str, key: str, cwd: Path) -> None:
        # PYTHONPATH: the command runs this repository's cli package, wherever the console script
        # was installed from (a worktree's tests with the main checkout's virtualenv).
        self.env = dict(os.environ, SENTIMENT_URL=url, SENTIMENT_KEY=key, PYTHONPATH=str(REPO))
        self.cwd = cwd

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SENTIMENT, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=TIMEOUT
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [SENTIMENT, *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def service(serve, db, tmp_path):
    """Start gunicorn (with the given settings) and make an API key: (web, key, Cli)."""

    def start(**env: str):
        web = serve(**env)
        key = create_key(db, "cli-test")
        return web, key, Cli(web.base, key, tmp_path)

    return start


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def results_of(web, key: str, batch_id: str) -> bytes:
    answer = requests.get(
        f"{web.base}/batch/{batch_id}/results.csv",
        headers={"Authorization": f"Bearer {key}", "Accept-Encoding": "identity"},
        timeout=60,
    )
    assert answer.status_code == 200
    return answer.content


def test_upload_wait_out_status_results_and_list(service, runners, db, tmp_path):
    web, key, cli = service()
    runners.start()
    texts = sample_texts(1_000, seed=31)
    reviews = write(tmp_path / "reviews.csv", make_csv(texts))

    done = cli.run("upload", str(reviews), "--wait", "--out", "results.csv", "--metadata", "project=q3")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip()
    assert batch_id.startswith("batch-") and "\n" not in batch_id
    assert "completed" in done.stderr
    written = (tmp_path / "results.csv").read_bytes()
    assert written == results_of(web, key, batch_id)  # fetched gzip-compressed, inflated exactly
    assert len(list(csv.reader(io.StringIO(written.decode())))) == 1 + 1_000
    (owner,) = db.execute("SELECT client FROM batches WHERE public_id = %s", (batch_id,)).fetchone()
    assert owner == "cli-test"

    status = cli.run("status", batch_id)
    assert status.returncode == 0
    batch = json.loads(status.stdout)
    assert (batch["status"], batch["processed_count"]) == ("completed", 1_000)
    assert batch["metadata"] == {"project": "q3"}

    negative = cli.run("results", batch_id, "--sentiment", "negative", "--out", "negative.csv")
    assert negative.returncode == 0, negative.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "negative.csv").read_text())))
    assert len(rows) == batch["summary"]["negative"] > 0
    assert {row["sentiment"] for row in rows} == {"negative"}
    to_stdout = cli.run("results", batch_id)
    assert to_stdout.returncode == 0 and to_stdout.stdout.encode() == written

    gzipped = write(tmp_path / "more.csv.gz", gzip.compress(make_csv(sample_texts(300, seed=32))))
    second = cli.run("upload", str(gzipped), "--wait")
    assert second.returncode == 0, second.stderr
    listed = cli.run("list")
    assert listed.returncode == 0
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[0] == ["batch_id", "status", "total_count", "progress_percent", "created_at", "filename"]
    assert [(line[0], line[1], line[2], line[5]) for line in lines[1:]] == [
        (second.stdout.strip(), "completed", "300", "more.csv.gz"),
        (batch_id, "completed", "1000", "reviews.csv"),
    ]
    assert cli.run("list", "--limit", "1").stdout.count("\n") == 2


def test_completed_with_errors_exits_2(service, runners, tmp_path):
    _web, _key, cli = service()
    runners.start(SCORER="tests.scorers:poisoned", MAX_ATTEMPTS="2", RETRY_BACKOFF_SECONDS="0.1")
    texts = sample_texts(300, seed=33)
    texts[120] = f"this one is {POISON}"
    reviews = write(tmp_path / "poisoned.csv", make_csv(texts))
    done = cli.run("upload", str(reviews), "--wait", "--out", "results.csv")
    assert done.returncode == 2, done.stderr
    assert "completed_with_errors" in done.stderr and "1 failed" in done.stderr
    batch_id = done.stdout.strip()
    assert cli.run("status", batch_id).returncode == 2
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(rows) == 300 and [row["error"] != "" for row in rows].count(True) == 1


def test_cancelled_while_waiting_exits_3(service, runners, db, tmp_path):
    web, key, cli = service()
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="1")
    reviews = write(tmp_path / "slow.csv", make_csv(sample_texts(3_000, seed=34)))
    waiting = cli.start("upload", str(reviews), "--wait", "--out", "results.csv")
    try:
        batch_id = waiting.stdout.readline().strip()  # printed as soon as the upload is accepted
        assert batch_id.startswith("batch-")
        cancelled = requests.post(
            f"{web.base}/batch/{batch_id}/cancel", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert waiting.wait(timeout=TIMEOUT) == 3
        assert "cancelled" in waiting.stderr.read()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert not (tmp_path / "results.csv").exists()
    assert cli.run("status", batch_id).returncode == 3


def test_an_upload_answered_503_is_retried_after_its_retry_after(service, db, tmp_path):
    web, key, cli = service(MAX_UPLOADS="1", CLIENT_TIMEOUT="60")
    # An upload that stalls after 100 KB holds the worker's only upload slot: a thread reads it,
    # inside its COPY into batch_inputs (the slot is taken before; seen in pg_stat_activity).
    stalled = connect(web.port)
    stalled.sendall(
        head(
            "POST",
            "/batch/upload",
            Content_Type="text/csv",
            Content_Length="10000000",
            Authorization=f"Bearer {key}",
        )
        + make_csv(sample_texts(1_000))
    )
    wait_for(lambda: uploads_copying(db) == 1, timeout=60)
    probe = head(
        "POST", "/batch/upload", Content_Type="text/csv", Content_Length="0", Authorization=f"Bearer {key}"
    )
    refused = exchange(web.port, probe)
    assert refused is not None and refused.status == 503 and refused.headers["retry-after"] == "5"

    reviews = write(tmp_path / "reviews.csv", make_csv(sample_texts(200, seed=35)))
    uploading = cli.start("upload", str(reviews))
    try:
        told = uploading.stderr.readline()
        assert "503" in told and "retrying in 5 s" in told, told  # Retry-After: 5
        stalled.close()  # the stalled upload is cut short: its slot is free again
        assert uploading.wait(timeout=TIMEOUT) == 0, uploading.stderr.read()
        batch_id = uploading.stdout.read().strip()
    finally:
        if uploading.poll() is None:
            uploading.kill()
            uploading.wait()
    assert db.execute("SELECT public_id, total_count FROM batches").fetchall() == [(batch_id, 200)]


class AnswerDroppingProxy:
    """A TCP proxy in front of the service that, on its first connection, passes the request on
    and then hangs up on the client as soon as the service's answer starts: the upload was made,
    its answer lost. Later connections pass both ways."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.upstream))
            first = self.connections == 1
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, first), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, drop: bool | None) -> None:
        try:
            while data := source.recv(65536):
                if drop:
                    self.dropped.set()
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_an_upload_whose_answer_was_lost_is_retried_into_one_batch(service, runners, db, tmp_path):
    web, _key, cli = service()
    runners.start()
    proxy = AnswerDroppingProxy(web.port)
    cli.env["SENTIMENT_URL"] = f"http://127.0.0.1:{proxy.port}"
    try:
        reviews = write(tmp_path / "reviews.csv", make_csv(sample_texts(500, seed=36)))
        done = cli.run("upload", str(reviews), "--wait")
    finally:
        proxy.close()
    assert proxy.dropped.is_set()
    assert done.returncode == 0, done.stderr
    assert "no answer" in done.stderr and "retrying" in done.stderr
    assert "made by an earlier try" in done.stderr
    batch_id = done.stdout.strip()
    assert db.execute("SELECT public_id, total_count, status FROM batches").fetchall() == [
        (batch_id, 500, "completed")
    ]


def test_upload_names_the_columns_and_the_sheet(service, runners, tmp_path):
    web, key, cli = service()
    runners.start()
    tickets = write(
        tmp_path / "tickets.csv",
        b"ticket_id,created,channel,body\nT-1,2026-01-02,email,Awful support.\nT-2,2026-01-03,chat,Lovely!\n",
    )
    done = cli.run("upload", str(tickets), "--text-column", "body", "--id-column", "ticket_id", "--wait")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(results_of(web, key, done.stdout.strip()).decode())))
    assert [(r["id"], r["text"], r["created"], r["channel"]) for r in rows] == [
        ("T-1", "Awful support.", "2026-01-02", "email"),
        ("T-2", "Lovely!", "2026-01-03", "chat"),
    ]

    missing = cli.run("upload", str(tickets), "--text-column", "message")
    assert missing.returncode == 1 and "no column 'message' (text_column)" in missing.stderr

    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["not rows to score"])
    sheet = book.create_sheet("Tickets")
    for row in (["ref", "message"], ["a", "I love it"], ["b", "Terrible"]):
        sheet.append(row)
    book.save(tmp_path / "tickets.xlsx")
    options = ("--sheet", "Tickets", "--text-column", "message", "--id-column", "ref", "--wait")
    done = cli.run("upload", str(tmp_path / "tickets.xlsx"), *options)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(results_of(web, key, done.stdout.strip()).decode())))
    assert [(r["id"], r["text"]) for r in rows] == [("a", "I love it"), ("b", "Terrible")]
