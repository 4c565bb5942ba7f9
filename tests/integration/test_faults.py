"""The fault-injection suite: real runner processes, real signals, a real
PostgreSQL restarted under them. Whatever happens, every row is scored exactly once."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO
from tests.integration.helpers import process_next, score_everything


def status_of(client, batch_id: str) -> dict:
    response = client.get(f"/batch/{batch_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def finished(client, batch_id: str, timeout: float = 180) -> dict:
    return wait_for(
        lambda: (s := status_of(client, batch_id))["status"] != "processing" and s,
        timeout=timeout,
        interval=0.1,
    )


def assert_exactly_once(url: str, batch_id: str, expected_rows: int, summary: dict) -> None:
    """One result per input row, every input row kept, queue empty, summary = a recount."""
    with psycopg.connect(url) as conn:
        internal = conn.execute("SELECT id FROM batches WHERE public_id = %s", (batch_id,)).fetchone()[0]
        count, distinct, first, last = conn.execute(
            "SELECT count(*), count(DISTINCT row_number), min(row_number), max(row_number) "
            "FROM batch_results WHERE batch_id = %s",
            (internal,),
        ).fetchone()
        assert (count, distinct, first, last) == (expected_rows, expected_rows, 1, expected_rows)
        recount = dict(
            conn.execute(
                "SELECT vader_label(compound), count(*) FROM batch_results WHERE batch_id = %s "
                "AND error IS NULL GROUP BY 1",
                (internal,),
            ).fetchall()
        )
        assert {k: recount.get(k, 0) for k in ("positive", "negative", "neutral")} == {
            k: summary[k] for k in ("positive", "negative", "neutral")
        }
        inputs = "SELECT count(*) FROM batch_inputs WHERE batch_id = %s"
        assert conn.execute(inputs, (internal,)).fetchone()[0] == expected_rows
        assert conn.execute("SELECT count(*) FROM chunks WHERE batch_id = %s", (internal,)).fetchone()[0] == 0


def held_chunk(url: str, pid: int) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            # The first chunk of its round: the one it scores first.
            "SELECT id FROM chunks WHERE state = 'claimed' AND claimed_by LIKE %s ORDER BY id LIMIT 1",
            (f"%:{pid}",),
        ).fetchone()
    return row[0] if row else None


def test_sigkill_storm_on_a_100k_row_batch(client, upload, runners, database_url):
    """Kill a random one of 3 runners 20 times at random instants, replacing each."""
    batch_id = upload(make_csv(sample_texts(100_000, seed=21)))["batch_id"]
    env = {"LEASE_SECONDS": "2", "SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.02"}
    alive = [runners.start(**env) for _ in range(3)]
    rng = random.Random(4)
    kills = 0
    while kills < 20:
        time.sleep(rng.uniform(0.2, 0.7))
        assert status_of(client, batch_id)["status"] == "processing", "batch finished before 20 kills"
        victim = alive.pop(rng.randrange(len(alive)))
        # Killed holding a lease (on a busy machine a fresh runner may still be starting): that lease
        # must expire and its chunks be scored by another, once.
        wait_for(lambda v=victim: held_chunk(database_url, v.pid), timeout=120, interval=0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        kills += 1
        alive.append(runners.start(**env))
    status = finished(client, batch_id, timeout=300)
    assert status["status"] == "completed"
    assert status["processed_count"] == status["total_count"] == 100_000
    assert_exactly_once(database_url, batch_id, 100_000, status["summary"])
    assert "lease of" in runners.logs() and "expired, requeued" in runners.logs()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restart_mid_batch(database_url, upload, runners, pg_cluster, mode):
    from webapp import create_app

    app = create_app({"database_url": database_url, "db_pool_timeout": 1.0})
    client = app.test_client()
    try:
        batch_id = client.post(
            "/batch/upload", data=make_csv(sample_texts(5_000, seed=22)), content_type="text/csv"
        ).get_json()["batch_id"]
        runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.02")
        runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.02")
        wait_for(lambda: status_of(client, batch_id)["processed_count"] >= 500, timeout=60)
        pg_cluster.stop(mode)
        try:
            down = client.get(f"/batch/{batch_id}")
            assert down.status_code == 503
            assert down.mimetype == "application/problem+json"
            assert down.headers["Retry-After"] == "5"
            assert down.get_json()["type"] == "/problems/database-unavailable"
            # Both runners meet the outage too (their scoring loop, not only their webhook threads).
            outage = re.compile(r"(?<!webhooks: )database unavailable")

            def met() -> bool:
                return [outage.search(log) is not None for log in runners.each_log()] == [True, True]

            wait_for(met, timeout=60)
        finally:
            pg_cluster.start()
        # The app answers again once its pool has reconnected (503 until then).
        wait_for(lambda: client.get(f"/batch/{batch_id}").status_code == 200, timeout=60)
        status = finished(client, batch_id)
        assert status["status"] == "completed" and status["processed_count"] == 5_000
        assert_exactly_once(database_url, batch_id, 5_000, status["summary"])
        assert all(p.poll() is None for p in runners.procs)
    finally:
        app.extensions["db_pool"].close()


def test_frozen_runner_is_taken_over_and_writes_no_duplicates(client, upload, runners, database_url):
    batch_id = upload(make_csv(sample_texts(2_000, seed=23)))["batch_id"]
    # The victim takes a second per chunk, so SIGSTOP finds it holding one.
    victim = runners.start(LEASE_SECONDS="2", SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="1")
    frozen_chunk = wait_for(lambda: held_chunk(database_url, victim.pid), timeout=30)
    victim.send_signal(signal.SIGSTOP)
    try:
        helper = runners.start(LEASE_SECONDS="2")
        status = finished(client, batch_id, timeout=120)  # includes the frozen runner's chunk
        assert status["status"] == "completed"
    finally:
        victim.send_signal(signal.SIGCONT)
    assert_exactly_once(database_url, batch_id, 2_000, status["summary"])
    wait_for(lambda: "lease lost before commit" in runners.logs(), timeout=30)
    assert f"chunk {frozen_chunk} " in runners.logs()
    # Awake again, it goes back to work: with the helper gone it scores a new batch alone.
    helper.send_signal(signal.SIGTERM)
    assert helper.wait(timeout=10) == 0
    second = upload(make_csv(sample_texts(300, seed=24)))["batch_id"]
    status = finished(client, second, timeout=60)
    assert status["status"] == "completed" and victim.poll() is None
    assert_exactly_once(database_url, second, 300, status["summary"])


def test_poison_row_is_retried_then_failed_alone(client, upload, runners, database_url, db):
    texts = sample_texts(1_000, seed=25)
    texts[249] = "this row is ☠POISON☠ for the scorer"
    poisoned = upload(make_csv(texts))["batch_id"]
    healthy = upload(make_csv(sample_texts(1_000, seed=26)))["batch_id"]
    env = {"SCORER": "tests.scorers:poisoned", "MAX_ATTEMPTS": "3", "RETRY_BACKOFF_SECONDS": "0.1"}
    runners.start(**env)
    runners.start(**env)
    status = finished(client, poisoned)
    assert status["status"] == "completed_with_errors"
    assert (status["processed_count"], status["failed_count"]) == (999, 1)
    assert sum(status["summary"][s] for s in ("positive", "negative", "neutral")) == 999
    page = client.get(f"/batch/{poisoned}/results?page=3&per_page=100").get_json()["results"]
    failed = [r for r in page if r["sentiment"] is None]
    assert [r["row"] for r in failed] == [250]
    assert "PoisonedText" in failed[0]["error"] and failed[0]["score"] is None
    assert all(r["sentiment"] for r in page if r["row"] != 250)
    logs = runners.logs()
    assert (
        "failed on attempt 1" in logs and "failed on attempt 2" in logs and "failed on attempt 3" not in logs
    )
    other = finished(client, healthy)
    assert (other["status"], other["processed_count"], other["failed_count"]) == ("completed", 1_000, 0)


def test_sigterm_mid_chunk_commits_it_and_exits_zero(client, upload, runners, database_url, tmp_path):
    batch_id = upload(make_csv(sample_texts(1_000, seed=27)))["batch_id"]
    scoring = tmp_path / "scoring"
    proc = runners.start(
        SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="1.5", TEST_SCORE_STARTED_FILE=str(scoring)
    )
    # Mid-chunk: scoring it, not merely holding it (a busy machine may claim well before it scores).
    wait_for(scoring.exists, timeout=30)
    chunk = held_chunk(database_url, proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    status = status_of(client, batch_id)
    assert status["processed_count"] >= 100  # the chunk in hand was committed
    with psycopg.connect(database_url) as conn:
        state = conn.execute("SELECT state FROM chunks WHERE id = %s", (chunk,)).fetchone()[0]
        assert state == "done"
        assert conn.execute("SELECT count(*) FROM chunks WHERE state = 'claimed'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM runners").fetchone()[0] == 0  # it left cleanly
        # It had claimed CLAIM_CHUNKS chunks at once: those not yet scored went back uncounted.
        given_back = "SELECT count(*) FROM chunks WHERE state = 'ready' AND attempts > 0"
        assert conn.execute(given_back).fetchone()[0] == 0


def test_several_chunks_per_claim_and_a_lost_lease_among_them(client, upload, db):
    from core.batches.queue import RunnerIdentity, claim_chunks, finish_chunks
    from core.settings import Settings
    from jobrunner.chunk_scoring import score_chunk

    first = upload(make_csv(sample_texts(500, seed=31)))["batch_id"]
    upload(make_csv(sample_texts(500, seed=32)))
    chunks = claim_chunks(db, "test:0", 60, limit=5)
    # The head of the queue and the same batch's chunks among the queue's next 5 turns (the two
    # batches' chunks alternate), each its own lease.
    assert [c.first_row for c in chunks] == [1, 101, 201]
    assert len({c.batch_id for c in chunks}) == 1 and len({c.claim_token for c in chunks}) == 3
    # The middle one's lease runs out and another runner takes it over.
    db.execute("UPDATE chunks SET claim_token = gen_random_uuid() WHERE id = %s", (chunks[1].chunk_id,))
    scored = [score_chunk(c, Settings()) for c in chunks]
    done = finish_chunks(db, scored, RunnerIdentity("test:0", "test", 0, "fast"))
    assert done == {chunks[0].chunk_id, chunks[2].chunk_id}
    status = status_of(client, first)
    assert status["processed_count"] == 200 and status["status"] == "processing"
    rows = db.execute("SELECT row_number FROM batch_results ORDER BY 1").fetchall()  # first batch only
    assert [r[0] for r in rows] == [*range(1, 101), *range(201, 301)]
    runner = db.execute("SELECT chunks_done, rows_done FROM runners WHERE name = 'test:0'").fetchone()
    assert runner == (2, 200)


def test_small_batch_is_not_stuck_behind_a_big_one(client, upload, db):
    """Claim order interleaves batches: a one-chunk batch goes next, not after 200 chunks."""
    big = upload(make_csv(sample_texts(20_000, seed=28)))["batch_id"]
    for _ in range(10):
        process_next(db)
    small = upload(make_csv(sample_texts(100, seed=29)))["batch_id"]
    order = [process_next(db).batch_id for _ in range(5)]
    small_id = db.execute("SELECT id FROM batches WHERE public_id = %s", (small,)).fetchone()[0]
    assert small_id in order[:2]
    assert status_of(client, small)["status"] == "completed"
    assert status_of(client, big)["status"] == "processing"


def test_fairness_with_a_real_runner(client, upload, runners):
    big = upload(make_csv(sample_texts(30_000, seed=30)))["batch_id"]
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.02")
    wait_for(lambda: status_of(client, big)["processed_count"] >= 1_000, timeout=60)
    small = upload(make_csv(sample_texts(100, seed=31)))["batch_id"]
    done = finished(client, small, timeout=60)
    assert done["status"] == "completed"
    big_now = status_of(client, big)
    assert big_now["status"] == "processing" and big_now["processed_count"] < 30_000


def test_runners_table_shows_who_works_and_forgets_the_dead(client, upload, runners, database_url, db):
    env = {"HEARTBEAT_SECONDS": "0.5", "RUNNER_EXPIRY_SECONDS": "2", "RELEASE_EXPIRED_SECONDS": "0.5"}
    first, second = runners.start(**env), runners.start(**env)
    wait_for(lambda: db.execute("SELECT count(*) FROM runners").fetchone()[0] == 2, timeout=30)
    batch_id = upload(make_csv(sample_texts(1_000, seed=32)))["batch_id"]
    finished(client, batch_id)
    rows = dict(db.execute("SELECT pid, chunks_done FROM runners").fetchall())
    assert set(rows) == {first.pid, second.pid} and sum(rows.values()) == 10
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: [r[0] for r in db.execute("SELECT pid FROM runners")] == [second.pid], timeout=30)


def test_cancel_then_delete(client, upload, runners, database_url, db):
    batch_id = upload(make_csv(sample_texts(5_000, seed=33)))["batch_id"]
    proc = runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.3")
    wait_for(lambda: held_chunk(database_url, proc.pid), timeout=30)
    assert client.delete(f"/batch/{batch_id}").status_code == 409  # still processing
    response = client.post(f"/batch/{batch_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert db.execute("SELECT count(*) FROM chunks WHERE state = 'ready'").fetchone()[0] == 0
    # The chunk in hand finishes; then nothing is left in the queue.
    wait_for(lambda: db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0, timeout=30)
    status = status_of(client, batch_id)
    assert status["status"] == "cancelled" and 0 < status["processed_count"] < 5_000
    # The rows scored before the cancel (and by the chunk in hand) page in file order, complete.
    page = client.get(f"/batch/{batch_id}/results?per_page=1000").get_json()
    assert page["complete"] is True and 0 < len(page["results"]) == min(status["processed_count"], 1000)
    assert client.get(f"/batch/{batch_id}/results?order=compound").status_code == 409
    assert client.post(f"/batch/{batch_id}/cancel").status_code == 200  # idempotent
    assert client.delete(f"/batch/{batch_id}").status_code == 204
    assert client.get(f"/batch/{batch_id}").status_code == 404
    # The batch is gone for clients at once; the runner's reaper removes its rows in the background.
    tables = ("batches", "batch_inputs", "chunks", "batch_results", "batch_row_errors")
    wait_for(lambda: all(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0 for t in tables), 30)


def test_cancel_a_finished_batch_is_409(client, upload, db):
    batch_id = upload(make_csv(["good"]))["batch_id"]
    score_everything(db)
    response = client.post(f"/batch/{batch_id}/cancel")
    assert response.status_code == 409 and response.get_json()["status_of_batch"] == "completed"


def test_purge_removes_old_finished_batches(client, upload, db, database_url):
    old = upload(make_csv(["good", "bad"]))["batch_id"]
    recent = upload(make_csv(["fine"]))["batch_id"]
    running = upload(make_csv(["still waiting"]))["batch_id"]
    for _ in range(2):
        process_next(db)
    db.execute("UPDATE batches SET completed_at = now() - interval '8 days' WHERE public_id = %s", (old,))
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "jobrunner", "purge", "--older-than", "7d"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "purged 1 batch" in out.stdout, out.stderr
    assert client.get(f"/batch/{old}").status_code == 404
    assert client.get(f"/batch/{recent}").status_code == 200
    assert client.get(f"/batch/{running}").status_code == 200
    assert db.execute("SELECT count(*) FROM batch_results").fetchone()[0] == 1
