"""Slow chunks in a runner's round (jobrunner/round_pipe.py, jobrunner/lease_keeper.py), with real
runner processes: the chunks already scored commit while a slow one is still in the scorer, and a
chunk that waited behind a slow one keeps its lease for its own scoring."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg

from core.batches.queue import release_expired
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.test_faults import assert_exactly_once, finished, status_of


def test_scored_chunks_commit_while_a_slow_chunk_of_their_round_is_scored(
    client, upload, runners, database_url, db, tmp_path
):
    gate = tmp_path / "gate"
    runners.start(SCORER="tests.scorers:gated_when_marked", TEST_SCORE_GATE=str(gate))
    # A quick batch first: the runner's rounds grow to many chunks at its pace.
    warm = upload(make_csv(sample_texts(3_000, seed=81)))["batch_id"]
    assert finished(client, warm, timeout=120)["status"] == "completed"
    texts = sample_texts(300, seed=82)
    texts[100:200] = [f"⏳ {text}" for text in texts[100:200]]  # the second chunk waits at the gate
    batch_id = upload(make_csv(texts))["batch_id"]
    # The first chunk is committed while the second is held in the scorer, the third behind it.
    wait_for(lambda: status_of(client, batch_id)["processed_count"] >= 100, timeout=60)
    in_round = db.execute(
        "SELECT count(*) FROM chunks c JOIN batches b ON b.id = c.batch_id "
        "WHERE b.public_id = %s AND c.state = 'claimed'",
        (batch_id,),
    ).fetchone()[0]
    assert in_round == 2, "the slow chunk and the one after it are still the runner's"
    assert status_of(client, batch_id)["processed_count"] == 100
    gate.touch()
    status = finished(client, batch_id, timeout=120)
    assert (status["status"], status["failed_count"]) == ("completed", 0)
    assert_exactly_once(database_url, batch_id, 300, status["summary"])
    assert "while the rest of their round is scored" in runners.logs()


def test_a_chunk_that_waited_behind_a_slow_one_keeps_its_lease(client, upload, runners, database_url):
    """Leases of 1 s, renewed for 10 s (STUCK_CHUNK_SECONDS), rounds of one chunk. After quick rounds the
    runner claims a round ahead; then a batch whose texts look as short but take 6 s a chunk: the
    chunk claimed ahead waits 6 s behind the first, then is scored for 6 s, 12 s in all. Counted
    from its own scoring start it is renewed throughout; meanwhile expired leases are released as
    an idle runner would."""
    runners.start(
        SCORER="tests.scorers:slow_when_marked",
        TEST_SCORE_DELAY_SECONDS="6",
        LEASE_SECONDS="1",
        STUCK_CHUNK_SECONDS="10",
        CLAIM_CHUNKS="1",
    )
    warm = upload(make_csv(sample_texts(500, seed=83)))["batch_id"]
    assert finished(client, warm, timeout=120)["status"] == "completed"
    batch_id = upload(make_csv([f"⏳ {text}" for text in sample_texts(300, seed=85)]))["batch_id"]
    with expired_leases_released(database_url):
        status = finished(client, batch_id, timeout=150)
    assert (status["status"], status["processed_count"], status["failed_count"]) == ("completed", 300, 0)
    assert_exactly_once(database_url, batch_id, 300, status["summary"])
    logs = runners.logs()
    assert "no longer renewed" not in logs, logs
    assert "lease lost" not in logs and "expired, requeued" not in logs, logs


def test_a_chunk_slower_than_ten_leases_is_not_taken_for_a_stuck_one(client, upload, runners, database_url):
    """Leases of 1 s and a chunk that takes 12 s, as long texts with the reference scorer take on
    short leases: well within STUCK_CHUNK_SECONDS (600 s by default), so it keeps its lease and the
    batch completes on its first attempt, while expired leases are released as an idle runner would."""
    batch_id = upload(make_csv(sample_texts(100, seed=86)))["batch_id"]
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="12", LEASE_SECONDS="1")
    with expired_leases_released(database_url):
        status = finished(client, batch_id, timeout=150)
    assert (status["status"], status["processed_count"], status["failed_count"]) == ("completed", 100, 0)
    logs = runners.logs()
    assert "no longer renewed" not in logs and "expired, requeued" not in logs, logs


@contextlib.contextmanager
def expired_leases_released(database_url: str) -> Iterator[None]:
    """Meanwhile, chunks whose leases expired go back to the queue every 0.3 s, as idle runners'
    housekeeping would put them back."""
    stop = threading.Event()

    def release() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.wait(0.3):
                release_expired(conn)

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    try:
        yield
    finally:
        stop.set()
        releaser.join(timeout=10)


def test_a_round_expected_to_be_slow_is_not_claimed_ahead_of(client, upload, runners, db, tmp_path):
    """After rounds of short texts, a round of 15,000-character texts is expected to take seconds
    at the pace measured: the runner claims no round ahead of it, which would only be kept from
    other runners meanwhile."""
    gate = tmp_path / "gate"
    runners.start(SCORER="tests.scorers:gated_when_marked", TEST_SCORE_GATE=str(gate), CLAIM_CHUNKS="2")
    warm = upload(make_csv(sample_texts(3_000, seed=84)))["batch_id"]
    assert finished(client, warm, timeout=120)["status"] == "completed"
    long_text = "⏳ " + "a good day, a bad day, " * 650
    batch_id = upload(make_csv([f"{n}: {long_text}" for n in range(400)]))["batch_id"]
    claimed = (
        "SELECT count(*) FROM chunks c JOIN batches b ON b.id = c.batch_id "
        "WHERE b.public_id = %s AND c.state = 'claimed'"
    )
    wait_for(lambda: db.execute(claimed, (batch_id,)).fetchone()[0] >= 2, timeout=60)
    time.sleep(2)  # a claim ahead, had one been sent with the round, has been answered by now
    assert db.execute(claimed, (batch_id,)).fetchone()[0] == 2, "only the round in hand is held"
    gate.touch()
    status = finished(client, batch_id, timeout=180)
    assert (status["status"], status["processed_count"], status["failed_count"]) == ("completed", 400, 0)
