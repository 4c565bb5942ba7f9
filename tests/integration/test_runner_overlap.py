"""The overlapped runner loop (jobrunner/round_pipe.py) keeps the fault suite's guarantees: real
runner processes behind a delaying TCP proxy (so a claim or a commit is in flight most of the time),
real signals, and no timing assertions."""

from __future__ import annotations

import re
import signal

from bench.delay_proxy import delaying_proxy, unix_socket_target, via_proxy
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.test_faults import assert_exactly_once, finished, status_of

#: Each way: a round trip through the proxy takes at least 100 ms, a claim or a commit far
#: longer than scoring a round with the constant scorer, so the loop nearly always has one in flight.
DELAY_SECONDS = 0.05
FAST_ROUNDS = {"SCORER": "tests.scorers:constant", "CLAIM_CHUNKS": "2"}


def test_sigterm_during_an_overlapped_claim_gives_everything_back(client, upload, runners, database_url, db):
    batch_id = upload(make_csv(sample_texts(10_000, seed=51)))["batch_id"]
    with delaying_proxy(unix_socket_target(database_url), DELAY_SECONDS) as port:
        far = runners.start(DATABASE_URL=via_proxy(database_url, port), **FAST_ROUNDS)
        # A few rounds committed: the loop is past its first claim and claims ahead of its scoring.
        wait_for(lambda: status_of(client, batch_id)["processed_count"] >= 600, timeout=60)
        far.send_signal(signal.SIGTERM)
        assert far.wait(timeout=30) == 0
    logs = runners.logs()
    # The round claimed ahead (its claim was in flight or just answered) went back unscored.
    given = [int(n) for n in re.findall(r"(\d+) claimed chunk\(s\) given back unscored", logs)]
    assert given and given[-1] >= 1, logs
    assert db.execute("SELECT count(*) FROM chunks WHERE state = 'claimed'").fetchone()[0] == 0
    # Given back with their attempt uncounted: no waiting chunk carries an attempt.
    assert db.execute("SELECT count(*) FROM chunks WHERE state = 'ready' AND attempts > 0").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM runners").fetchone()[0] == 0  # it left cleanly
    # Another runner finishes the batch: every row exactly once.
    runners.start()
    status = finished(client, batch_id, timeout=120)
    assert status["status"] == "completed"
    assert_exactly_once(database_url, batch_id, 10_000, status["summary"])


def test_a_lost_lease_in_an_overlapped_round_drops_only_that_chunk(client, upload, runners, database_url, db):
    """Another runner takes over one chunk of the round claimed ahead (its token changes while the
    far runner holds it): that chunk's results are dropped at the commit, the others of its round
    commit, and the chunk is scored again once its lease expires."""
    batch_id = upload(make_csv(sample_texts(6_000, seed=52)))["batch_id"]
    with delaying_proxy(unix_socket_target(database_url), DELAY_SECONDS) as port:
        far = runners.start(DATABASE_URL=via_proxy(database_url, port), **FAST_ROUNDS)
        wait_for(lambda: status_of(client, batch_id)["processed_count"] >= 400, timeout=60)
        steal = (
            "UPDATE chunks SET claim_token = gen_random_uuid() WHERE id = ("
            " SELECT max(id) FROM chunks WHERE state = 'claimed' AND claimed_by LIKE %s) "
            "AND state = 'claimed' RETURNING id"
        )
        stolen = wait_for(lambda: db.execute(steal, (f"%:{far.pid}",)).fetchone(), timeout=30)[0]
        status = finished(client, batch_id, timeout=180)
        # The done chunks are dropped right after the last commit, one more (slow) round trip later.
        wait_for(lambda: db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0, timeout=30)
        assert far.poll() is None
    assert status["status"] == "completed"
    assert_exactly_once(database_url, batch_id, 6_000, status["summary"])
    logs = runners.logs()
    lost = set(re.findall(r"chunk (\d+) of batch \d+: lease lost before commit", logs))
    assert lost == {str(stolen)}, logs
    assert re.search(rf"chunk {stolen} of batch \d+: lease of \S+ expired, requeued", logs), logs


def test_a_round_sized_on_another_batchs_texts_hands_back_what_it_cannot_score_soon(upload, runners, client):
    """Rounds are sized on the last round's pace; a round of a much slower batch is cut short: the
    chunks scored commit, the rest go back to the queue for other runners, uncounted."""
    quick = upload(make_csv(sample_texts(6_000, seed=70)))["batch_id"]
    proc = runners.start(SCORER="tests.scorers:slow_when_marked", TEST_SCORE_DELAY_SECONDS="0.5")
    assert finished(client, quick, timeout=120)["status"] == "completed"  # its rounds grew large
    slow = upload(make_csv([f"⏳ text {n}" for n in range(1_500)]))["batch_id"]
    status = finished(client, slow, timeout=120)
    assert (status["status"], status["processed_count"], status["failed_count"]) == ("completed", 1_500, 0)
    logs = runners.logs()
    assert "given back unscored" in logs, logs
    assert proc.poll() is None
