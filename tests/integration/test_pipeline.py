"""The seed's flow end to end: upload, chunked scoring by runners, status, results."""

from __future__ import annotations

import io
import signal

import psycopg
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from core.batches import SENTIMENTS
from core.batches.queue import claim_chunk
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import process


def _status(client, batch_id: str) -> dict:
    response = client.get(f"/batch/{batch_id}")
    assert response.status_code == 200
    return response.get_json()


def _all_results(client, batch_id: str, per_page: int) -> list[dict]:
    rows, page = [], 1
    while True:
        body = client.get(f"/batch/{batch_id}/results?page={page}&per_page={per_page}").get_json()
        if not body["results"]:
            return rows
        rows += body["results"]
        page += 1


def _counts(db, batch_id: str) -> dict[str, int]:
    """Rows per table for one batch, plus duplicate results."""
    internal = db.execute("SELECT id FROM batches WHERE public_id = %s", (batch_id,)).fetchone()[0]
    return {
        "inputs": db.execute("SELECT count(*) FROM batch_inputs WHERE batch_id = %s", (internal,)).fetchone()[
            0
        ],
        "results": db.execute(
            "SELECT count(*) FROM batch_results WHERE batch_id = %s", (internal,)
        ).fetchone()[0],
        "distinct": db.execute(
            "SELECT count(DISTINCT row_number) FROM batch_results WHERE batch_id = %s", (internal,)
        ).fetchone()[0],
        "chunks_not_done": db.execute(
            "SELECT count(*) FROM chunks WHERE batch_id = %s AND state <> 'done'", (internal,)
        ).fetchone()[0],
    }


def test_upload_progress_complete_and_pages(client, upload, runners, db, database_url):
    texts = sample_texts(1000)
    created = upload(make_csv(texts))
    assert created["status"] == "processing"
    assert created["total_count"] == 1000
    assert created["processed_count"] == 0
    batch_id = created["batch_id"]
    assert batch_id.startswith("batch-") and len(batch_id) == 38

    status = _status(client, batch_id)
    assert (status["processed_count"], status["total_count"], status["progress_percent"]) == (0, 1000, 0.0)
    assert "summary" not in status

    # Score three chunks in this process: progress must show part-way.
    for _ in range(3):
        chunk = claim_chunk(db, "test-runner", 60)
        assert chunk is not None and len(chunk.texts) == len(chunk.row_numbers) == 100
        assert process(db, chunk, "reference")
    status = _status(client, batch_id)
    assert status["status"] == "processing"
    assert (status["processed_count"], status["progress_percent"]) == (300, 30.0)
    assert status["started_at"] is not None and status["completed_at"] is None
    # The rows scored so far page in file order while the batch runs; the last page keeps a
    # cursor to ask again from.
    running = client.get(f"/batch/{batch_id}/results?per_page=1000").get_json()
    assert running["complete"] is False
    assert [r["row"] for r in running["results"]] == list(range(1, 301))
    assert running["next_cursor"] is not None
    later = client.get(f"/batch/{batch_id}/results?after={running['next_cursor']}").get_json()
    assert later["results"] == [] and later["next_cursor"] is not None

    runners.start()
    status = wait_for(lambda: (s := _status(client, batch_id))["status"] == "completed" and s)
    assert status["processed_count"] == 1000 and status["progress_percent"] == 100.0
    assert sum(status["summary"][s] for s in SENTIMENTS) == 1000
    assert status["completed_at"].endswith("Z")

    rows = _all_results(client, batch_id, per_page=64)
    assert client.get(f"/batch/{batch_id}/results").get_json()["complete"] is True
    # The cursor of the running batch's last page goes on where it stopped.
    rest = client.get(f"/batch/{batch_id}/results?per_page=1000&after={running['next_cursor']}").get_json()
    assert [r["row"] for r in rest["results"]] == list(range(301, 1001)) and rest["next_cursor"] is None
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(1, 1001)]
    assert [r["text"] for r in rows] == texts
    analyzer = SentimentIntensityAnalyzer()
    for row in rows[:200]:
        expected = analyzer.polarity_scores(row["text"])["compound"]
        assert row["compound"] == expected
        assert row["score"] == abs(expected)
        label = "positive" if expected >= 0.05 else "negative" if expected <= -0.05 else "neutral"
        assert row["sentiment"] == label
    recount = {k: sum(r["sentiment"] == k for r in rows) for k in ("positive", "negative", "neutral")}
    assert recount == {s: status["summary"][s] for s in SENTIMENTS}
    assert _counts(db, batch_id) == {"inputs": 1000, "results": 1000, "distinct": 1000, "chunks_not_done": 0}


def test_raw_text_csv_body(client, runners):
    body = make_csv(["I love it", "I hate it", "It is a chair"], crlf=True)
    response = client.post("/batch/upload", data=body, content_type="text/csv")
    assert response.status_code == 202
    batch_id = response.get_json()["batch_id"]
    assert response.headers["Location"] == f"/batch/{batch_id}"
    runners.start()
    wait_for(lambda: _status(client, batch_id)["status"] == "completed")
    summary = _status(client, batch_id)["summary"]
    assert {s: summary[s] for s in SENTIMENTS} == {"positive": 1, "negative": 1, "neutral": 1}


def test_ten_thousand_rows_two_runners_exactly_once(client, upload, runners, db):
    created = upload(make_csv(sample_texts(10_000, seed=3)))
    first, second = runners.start(), runners.start()
    batch_id = created["batch_id"]
    status = wait_for(lambda: (s := _status(client, batch_id))["status"] == "completed" and s, timeout=120)
    assert status["processed_count"] == 10_000
    assert _counts(db, batch_id) == {
        "inputs": 10_000,
        "results": 10_000,
        "distinct": 10_000,
        "chunks_not_done": 0,
    }
    # Both runners did part of the work (their entries in the runners table say so).
    done = db.execute("SELECT pid, chunks_done FROM runners ORDER BY pid").fetchall()
    assert sorted(pid for pid, _ in done) == sorted([first.pid, second.pid]), runners.logs()
    assert all(chunks > 0 for _, chunks in done) and sum(c for _, c in done) == 100
    assert first.poll() is None and second.poll() is None


def test_sigkill_mid_batch_loses_and_duplicates_nothing(client, upload, runners, db):
    created = upload(make_csv(sample_texts(5_000, seed=5)))
    batch_id = created["batch_id"]
    victim = runners.start()
    wait_for(lambda: _status(client, batch_id)["processed_count"] >= 500, timeout=60, interval=0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    progress_at_kill = _status(client, batch_id)["processed_count"]
    assert progress_at_kill < 5_000
    runners.start()
    status = wait_for(lambda: (s := _status(client, batch_id))["status"] == "completed" and s, timeout=120)
    assert status["processed_count"] == 5_000
    assert sum(status["summary"][s] for s in SENTIMENTS) == 5_000
    assert _counts(db, batch_id) == {
        "inputs": 5_000,
        "results": 5_000,
        "distinct": 5_000,
        "chunks_not_done": 0,
    }


def test_sigterm_idle_runner_exits_zero(runners):
    proc = runners.start()
    wait_for(lambda: "starting" in runners.logs(), timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


def test_header_variants_and_quoting(client, db):
    raw = (
        "\ufeff Text ,extra, ID \r\n"
        '"hello, ""world""",x,a1\r\n'
        '"line one\nline two",y,a2\r\n'
        "\r\n"
        "plain,z,a3\r\n"
    ).encode()
    response = client.post(
        "/batch/upload", data={"file": (io.BytesIO(raw), "v.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["total_count"] == 3
    written = db.execute(
        "SELECT row_number, client_id, text FROM batch_inputs ORDER BY row_number"
    ).fetchall()
    assert written == [(1, "a1", 'hello, "world"'), (2, "a2", "line one\nline two"), (3, "a3", "plain")]
    chunks = db.execute("SELECT first_row, last_row, state FROM chunks").fetchall()
    assert chunks == [(1, 3, "ready")]


def test_missing_id_column_uses_line_number(client, db):
    raw = b'text\n"two\nlines"\nthird\n'
    response = client.post("/batch/upload", data=raw, content_type="text/csv")
    assert response.status_code == 202
    written = db.execute("SELECT client_id, text FROM batch_inputs ORDER BY row_number").fetchall()
    assert written == [("2", "two\nlines"), ("4", "third")]


def test_chunks_follow_chunk_size(database_url, db):
    from webapp import create_app

    app = create_app({"database_url": database_url, "chunk_size": 7})
    try:
        response = app.test_client().post(
            "/batch/upload", data=make_csv(sample_texts(20)), content_type="text/csv"
        )
        assert response.status_code == 202
    finally:
        app.extensions["db_pool"].close()
    ranges = db.execute("SELECT first_row, last_row FROM chunks ORDER BY first_row").fetchall()
    assert ranges == [(1, 7), (8, 14), (15, 20)]


def test_runner_and_web_survive_a_postgresql_restart(client, upload, runners, db, pg_cluster, database_url):
    created = upload(make_csv(sample_texts(5_000, seed=8)))
    batch_id = created["batch_id"]
    runners.start()
    wait_for(lambda: _status(client, batch_id)["processed_count"] >= 300, timeout=60, interval=0.01)
    db.close()
    pg_cluster.restart("fast")
    status = wait_for(lambda: (s := _status(client, batch_id))["status"] == "completed" and s, timeout=120)
    assert status["processed_count"] == 5_000
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert _counts(conn, batch_id) == {
            "inputs": 5_000,
            "results": 5_000,
            "distinct": 5_000,
            "chunks_not_done": 0,
        }
    assert "database unavailable" in runners.logs()
    assert runners.procs[0].poll() is None
