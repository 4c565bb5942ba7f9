"""Long rounds, rounds that raise, and a storm of cancels and deletes while runners are killed:
real runner processes, real signals. Nothing is stuck afterwards and every batch is final."""

from __future__ import annotations

import random
import signal
import time

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.test_faults import assert_exactly_once, finished, status_of


def test_a_round_three_leases_long_commits_once(client, upload, runners, database_url, db):
    """Each round takes three times LEASE_SECONDS to score: the leases are renewed, nothing is taken over."""
    batch_id = upload(make_csv(sample_texts(400, seed=41)))["batch_id"]
    chunk_ids = [chunk_id for (chunk_id,) in db.execute("SELECT id FROM chunks ORDER BY id")]
    # Every claim of a chunk (the update that raises its attempts) leaves a row in claims.
    db.execute(
        """
        CREATE TABLE claims (chunk_id bigint, attempts integer);
        CREATE FUNCTION note_claim() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            INSERT INTO claims VALUES (NEW.id, NEW.attempts);
            RETURN NULL;
        END $$;
        CREATE TRIGGER note_claim AFTER UPDATE OF attempts ON chunks
        FOR EACH ROW WHEN (NEW.attempts > OLD.attempts) EXECUTE FUNCTION note_claim();
        """
    )
    env = {
        "LEASE_SECONDS": "1",
        "RELEASE_EXPIRED_SECONDS": "0.2",
        "CLAIM_CHUNKS": "2",
        "SCORER": "tests.scorers:slow",
        "TEST_SCORE_DELAY_SECONDS": "1.5",  # per chunk: 3 s per round of 2 chunks
    }
    runners.start(**env)
    runners.start(**env)  # a second runner that would take over any expired lease
    status = finished(client, batch_id, timeout=120)
    assert status["status"] == "completed"
    assert_exactly_once(database_url, batch_id, 400, status["summary"])
    # Every chunk was claimed once, at its first attempt: no lease was taken over.
    claims = db.execute("SELECT chunk_id, attempts FROM claims ORDER BY chunk_id").fetchall()
    assert len(chunk_ids) == 4 and claims == [(chunk_id, 1) for chunk_id in chunk_ids]
    logs = runners.logs()
    assert "lease lost" not in logs and "expired" not in logs, logs


def test_a_runner_survives_a_round_whose_commit_raises(client, upload, runners, db):
    """PostgreSQL refuses the finishing statement of rounds holding a marked text (a trigger the
    test adds raises; not a connection error): the runner logs it, hands the round back, and goes
    on; once the chunk is given up its rows are recorded as failed, and the other batch completes."""
    db.execute(
        """
        CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.error IS NULL AND EXISTS (
                SELECT 1 FROM batch_inputs AS i
                WHERE i.batch_id = NEW.batch_id AND i.row_number = NEW.row_number
                  AND i.text LIKE '%REFUSED%') THEN
                RAISE EXCEPTION 'refused by the test';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_marked BEFORE INSERT ON batch_results
        FOR EACH ROW EXECUTE FUNCTION refuse_marked();
        """
    )
    texts = sample_texts(200, seed=42)
    texts[150] = "this text is REFUSED by the database"
    marked = upload(make_csv(texts))["batch_id"]
    healthy = upload(make_csv(sample_texts(300, seed=43)))["batch_id"]
    env = {"MAX_ATTEMPTS": "2", "RETRY_BACKOFF_SECONDS": "0.05", "CLAIM_CHUNKS": "1"}
    proc = runners.start(**env)
    assert finished(client, healthy, timeout=120)["status"] == "completed"
    status = finished(client, marked, timeout=120)
    # The marked chunk's 100 rows could never be committed scored: given up, they count as failed.
    assert (status["status"], status["processed_count"], status["failed_count"]) == (
        "completed_with_errors",
        100,
        100,
    )
    assert proc.poll() is None, "the runner exited"
    assert "a round failed" in runners.logs() and "refused by the test" in runners.logs()


def test_cancel_and_delete_storm_while_runners_are_killed(client, upload, runners, db):
    """A stream of uploads; random cancels and deletes; a runner killed now and then. Afterwards no
    chunk is stuck, every batch is final, and DELETE succeeds on every one of them."""
    rng = random.Random(44)
    env = {"LEASE_SECONDS": "1", "RELEASE_EXPIRED_SECONDS": "0.2", "CLAIM_CHUNKS": "2"}
    env.update(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.02")
    alive = [runners.start(**env) for _ in range(3)]
    uploaded: list[str] = []
    deleted: set[str] = set()
    deadline = time.monotonic() + 25
    step = 0
    while time.monotonic() < deadline:
        step += 1
        uploaded.append(upload(make_csv(sample_texts(rng.randint(100, 3_000), seed=step)))["batch_id"])
        for batch_id in rng.sample(uploaded, k=min(2, len(uploaded))):
            if batch_id in deleted:
                continue
            if rng.random() < 0.6:
                assert client.post(f"/batch/{batch_id}/cancel").status_code in (200, 409)
            else:
                answer = client.delete(f"/batch/{batch_id}").status_code
                assert answer in (204, 409)
                if answer == 204:
                    deleted.add(batch_id)
        if step % 4 == 0:
            victim = alive.pop(rng.randrange(len(alive)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            alive.append(runners.start(**env))
        time.sleep(rng.uniform(0.05, 0.3))
    for batch_id in uploaded:
        if batch_id not in deleted:
            assert finished(client, batch_id, timeout=120)["status"] != "processing"
    wait_for(lambda: db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0, timeout=60)
    for batch_id in uploaded:
        if batch_id not in deleted:
            answer = client.delete(f"/batch/{batch_id}")
            assert answer.status_code == 204, (batch_id, status_of(client, batch_id), answer.get_json())
        assert client.get(f"/batch/{batch_id}").status_code == 404
    tables = ("batches", "batch_inputs", "chunks", "batch_results", "batch_row_errors")
    wait_for(lambda: all(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0 for t in tables), 120)
    assert all(proc.poll() is None for proc in alive)


def test_runner_sessions_carry_the_service_bounds(upload, runners, db):
    """A runner's connections (its loop's, its lease keeper's and its WEBHOOK_CONCURRENCY webhook
    deliverers', 2) are opened with the runner's connection string: named in pg_stat_activity,
    with the idle-in-transaction bound."""
    import psycopg

    from core.connections import conninfo
    from core.settings import Settings

    upload(make_csv(sample_texts(2_000, seed=46)))
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.5", LEASE_SECONDS="1")
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sentiment-runner' "
        "AND datname = current_database()"
    )
    wait_for(lambda: db.execute(query).fetchone()[0] == 4, timeout=30)
    with psycopg.connect(conninfo(Settings(database_url=db.info.dsn), "runner")) as probe:
        shown = probe.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0]
    assert shown == "1min"


def test_deleting_a_cancelled_batch_with_chunks_in_hand_says_to_retry(client, upload, db):
    from core.batches.queue import claim_chunks

    batch_id = upload(make_csv(sample_texts(300, seed=47)))["batch_id"]
    processing = client.delete(f"/batch/{batch_id}")
    assert processing.status_code == 409 and processing.get_json()["type"] == "/problems/batch-processing"
    claim_chunks(db, "test:0", 60, limit=1)
    assert client.post(f"/batch/{batch_id}/cancel").get_json()["status"] == "cancelled"
    in_hand = client.delete(f"/batch/{batch_id}")
    assert in_hand.status_code == 409 and in_hand.headers["Retry-After"] == "5"
    body = in_hand.get_json()
    assert body["type"] == "/problems/chunks-in-hand" and "cancel it first" not in body["detail"]


def test_a_waiting_chunk_whose_input_rows_vanished_is_claimed_and_closed_out(client, upload, db):
    """Its claim hands it out with no rows (not an invisible lease retried forever); its finish
    counts the rows as failed and the batch reaches a final state."""
    from tests.integration.helpers import score_everything

    batch_id = upload(make_csv(sample_texts(250, seed=48)))["batch_id"]
    db.execute("DELETE FROM batch_inputs WHERE row_number BETWEEN 101 AND 200")
    assert score_everything(db) == 3
    status = status_of(client, batch_id)
    assert (status["status"], status["processed_count"], status["failed_count"]) == (
        "completed_with_errors",
        150,
        100,
    )


def test_done_chunks_left_behind_by_a_lost_connection_are_swept(upload, db):
    """A runner whose connection goes between the commit that completes a batch and dropping its
    done chunks leaves them; housekeeping sweeps them, and never a processing batch's."""
    from core import batches
    from tests.integration.helpers import score_everything

    done_id = upload(make_csv(["good"] * 250))["batch_id"]
    score_everything(db)
    waiting_id = upload(make_csv(["good"] * 150))["batch_id"]
    ids = dict(db.execute("SELECT public_id, id FROM batches").fetchall())
    # As if finished() had not run: done chunks of the completed batch, and a processing batch's.
    db.execute(
        "INSERT INTO chunks (batch_id, first_row, last_row, state, finished_at) VALUES"
        " (%(done)s, 1, 100, 'done', now()), (%(done)s, 101, 200, 'done', now()),"
        " (%(waiting)s, 1, 100, 'done', now())",
        {"done": ids[done_id], "waiting": ids[waiting_id]},
    )
    assert batches.sweep_done_chunks(db) == 2
    left = db.execute("SELECT batch_id, state FROM chunks WHERE state = 'done'").fetchall()
    assert left == [(ids[waiting_id], "done")]
