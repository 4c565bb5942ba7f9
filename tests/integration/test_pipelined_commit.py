"""A finish and the next claim sent together (``finish_and_claim``): one round trip, one implicit
transaction, so both commit or neither does, and the round can still be committed alone."""

from __future__ import annotations

import psycopg
import pytest

from core.batches.queue import (
    RunnerIdentity,
    claim_chunks,
    configure_session,
    finish_and_claim,
    finish_chunks,
)
from core.settings import Settings
from jobrunner.chunk_scoring import score_chunk
from tests.helpers import make_csv, sample_texts

RUNNER = RunnerIdentity("test:0", "test", 0, "fast")


def _counts(db) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    return db.execute(
        "SELECT (SELECT count(*) FROM batch_results), (SELECT count(*) FROM chunks WHERE state = 'claimed'),"
        " (SELECT processed_count FROM batches)"
    ).fetchone()


def _first_round_scored(conn: psycopg.Connection) -> tuple[list, list]:
    """A round of one chunk, the uploaded batch's first, claimed as RUNNER on ``conn``; and its scores."""
    configure_session(conn)
    round_ = claim_chunks(conn, RUNNER.name, 60, limit=1)
    return round_, [score_chunk(chunk, Settings()) for chunk in round_]


def test_the_finish_and_the_next_claim_commit_together(upload, db, database_url):
    upload(make_csv(sample_texts(300, seed=50)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        round_, scored = _first_round_scored(conn)
        done, claimed = finish_and_claim(conn, scored, RUNNER, 60, 2)
    assert done == {round_[0].chunk_id}
    assert [c.first_row for c in claimed] == [101, 201]
    assert _counts(db) == (100, 2, 100)


def test_a_claim_that_fails_takes_the_finish_with_it_and_the_round_commits_alone(upload, db, database_url):
    upload(make_csv(sample_texts(300, seed=51)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        round_, scored = _first_round_scored(conn)
        # From now on PostgreSQL refuses every claim (a trigger the test adds raises).
        db.execute(
            """
            CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'claims refused by the test';
            END $$;
            CREATE TRIGGER refuse_claims BEFORE UPDATE ON chunks FOR EACH ROW
            WHEN (NEW.state = 'claimed' AND OLD.state = 'ready') EXECUTE FUNCTION refuse_claims();
            """
        )
        with pytest.raises(psycopg.errors.RaiseException, match="claims refused"):
            finish_and_claim(conn, scored, RUNNER, 60, 2)
        # Neither committed: the round is still held, nothing was written.
        assert _counts(db) == (0, 1, 0)
        assert finish_chunks(conn, scored, RUNNER) == {round_[0].chunk_id}
    assert _counts(db) == (100, 0, 100)


def test_binary_arrays_arrive_as_the_numbers_numpy_held(db):
    import math

    import numpy as np

    from core.batches.binary_arrays import float8_array, int4_array, register_arrays

    floats = np.array([0.0, -0.0, 1.0, -1.0, 0.05, -0.05, 1e-300, 0.123456789012345678, math.nan])
    ints = np.array([1, 2, 2**31 - 1, -(2**31), 0], dtype=np.int32)
    with db.cursor() as cur:
        register_arrays(cur)
        got_floats, got_ints, empty_f, empty_i = cur.execute(
            "SELECT %s, %s, %s, %s",
            (float8_array(floats), int4_array(ints), float8_array(np.array([])), int4_array(ints[:0])),
        ).fetchone()
    assert got_floats[:-1] == floats[:-1].tolist() and math.isnan(got_floats[-1])
    assert math.copysign(1, got_floats[1]) == -1  # bit for bit, the sign of zero included
    assert got_ints == ints.tolist()
    assert empty_f == [] and empty_i == []


def _waits_on_a_lock(db, pid: int) -> bool:  # type: ignore[no-untyped-def]
    query = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
    return bool(db.execute(query, (pid,)).fetchone()[0])


def test_a_cancel_racing_a_finish_and_the_next_claim_does_not_deadlock(upload, db, database_url):
    """The cancel locks the batch's chunks in id order; the runner's pair must not lock a later
    chunk (its claim) before waiting for an earlier one (its finish) that the cancel holds."""
    import threading

    from core.batches import cancel
    from tests.helpers import wait_for

    public_id = upload(make_csv(sample_texts(1_000, seed=52)))["batch_id"]
    outcomes: dict[str, object] = {}

    def attempt(name: str, call) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes[name] = call()
        except psycopg.Error as exc:
            outcomes[name] = exc

    with (
        psycopg.connect(database_url, autocommit=True) as runner,
        psycopg.connect(database_url, autocommit=True) as canceller,
        psycopg.connect(database_url) as blocker,
    ):
        round_, scored = _first_round_scored(runner)  # the batch's first chunk, in hand
        # Holding the fifth chunk stops the cancel there, with chunks one to four locked.
        blocker.execute(
            "SELECT id FROM chunks WHERE state = 'ready' ORDER BY id OFFSET 3 LIMIT 1 FOR UPDATE"
        ).fetchone()
        cancelling = threading.Thread(target=attempt, args=("cancel", lambda: cancel(canceller, public_id)))
        cancelling.start()
        wait_for(lambda: _waits_on_a_lock(db, canceller.info.backend_pid))
        pair = threading.Thread(
            target=attempt, args=("pair", lambda: finish_and_claim(runner, scored, RUNNER, 60, 2))
        )
        pair.start()
        wait_for(lambda: _waits_on_a_lock(db, runner.info.backend_pid))
        blocker.rollback()
        cancelling.join(30)
        pair.join(30)
    assert not isinstance(outcomes["cancel"], psycopg.Error), outcomes["cancel"]
    assert not isinstance(outcomes["pair"], psycopg.Error), outcomes["pair"]
    done, claimed = outcomes["pair"]  # type: ignore[misc]
    assert done == {round_[0].chunk_id} and claimed == []
    assert db.execute("SELECT status, processed_count FROM batches").fetchone() == ("cancelled", 100)


def test_what_follows_a_completing_commit_never_takes_the_round_or_its_claim_for_lost(
    upload, db, database_url
):
    """The batch's last chunk completes it; keeping its summary then fails (a lock it waits for past
    lock_timeout, an OperationalError as a deadlock is): the round and the claim sent with it stand."""
    upload(make_csv(sample_texts(100, seed=52)))
    upload(make_csv(sample_texts(200, seed=53)))
    with psycopg.connect(database_url, autocommit=True) as conn, psycopg.connect(database_url) as holder:
        round_, scored = _first_round_scored(conn)
        holder.execute("LOCK TABLE batch_summaries IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '200ms'")
        done, claimed = finish_and_claim(conn, scored, RUNNER, 60, 2)
        holder.rollback()
    assert done == {round_[0].chunk_id}
    assert [c.first_row for c in claimed] == [1, 101]
    first = db.execute("SELECT status, processed_count FROM batches ORDER BY id LIMIT 1").fetchone()
    assert first == ("completed", 100)
    assert db.execute("SELECT count(*) FROM batch_summaries").fetchone()[0] == 0


def test_a_failure_after_the_finish_leaves_the_callers_transaction_and_its_round_whole(
    upload, db, database_url
):
    """finish_chunks on a connection inside its caller's transaction (not autocommit): what follows
    the finish may fail (here a lock not granted in time) without aborting that transaction, whose
    commit carries the round finish_chunks reported committed."""
    upload(make_csv(sample_texts(100, seed=54)))
    with (
        psycopg.connect(database_url, autocommit=True) as claimer,
        psycopg.connect(database_url) as conn,
        psycopg.connect(database_url) as holder,
    ):
        round_, scored = _first_round_scored(claimer)
        holder.execute("LOCK TABLE batch_summaries IN ACCESS EXCLUSIVE MODE")
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            done = finish_chunks(conn, scored, RUNNER)
        holder.rollback()
    assert done == {round_[0].chunk_id}
    assert _counts(db) == (100, 0, 100)


def test_a_session_lost_after_a_completing_commit_keeps_the_round_and_is_replaced(upload, db, database_url):
    """The runner's session is killed (pg_terminate_backend) while what follows a completing commit
    waits for a lock: the round and the claim sent with it stand, and the next step opens a new
    session."""
    import threading

    from core.settings import Settings
    from jobrunner.runner_session import RunnerSession
    from tests.helpers import wait_for

    upload(make_csv(sample_texts(100, seed=55)))
    upload(make_csv(sample_texts(200, seed=56)))
    session = RunnerSession(Settings(database_url=database_url, migrate_on_start=False))
    outcomes: dict[str, object] = {}

    def pair() -> None:
        outcomes["pair"] = session.retrying(lambda conn: finish_and_claim(conn, scored, RUNNER, 60, 2))

    with psycopg.connect(database_url) as holder:
        round_, scored = _first_round_scored(session.connection())
        killed = session.connection().info.backend_pid
        holder.execute("LOCK TABLE batch_summaries IN ACCESS EXCLUSIVE MODE")
        pairing = threading.Thread(target=pair)
        pairing.start()
        wait_for(lambda: _waits_on_a_lock(db, killed))
        db.execute("SELECT pg_terminate_backend(%s)", (killed,))
        pairing.join(30)
        holder.rollback()
    done, claimed = outcomes["pair"]  # type: ignore[misc]
    assert done == {round_[0].chunk_id}
    assert [c.first_row for c in claimed] == [1, 101]
    held = "SELECT first_row FROM chunks WHERE state = 'claimed' AND claim_token = ANY(%s) ORDER BY 1"
    assert [row[0] for row in db.execute(held, ([c.claim_token for c in claimed],))] == [1, 101]
    try:
        assert session.retrying(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0]) != killed
    finally:
        session.drop()
