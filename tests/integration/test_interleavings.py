"""The queue's lifecycle statements under every interleaving that matters, isolation-tester style.

Two sessions each run one real operation (the service's own functions and
statements) inside a transaction. For each pair, four schedules: A then B,
B then A, A holding its locks while B runs (B may block; then A commits),
and the other way round. After each schedule the invariants hold, and after
the queue is drained (expired leases released, every ready chunk scored,
deleted batches reaped) every batch is final and nothing is left behind.
A deadlock anywhere fails the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest

from core import batches
from core.batches.queue import (
    ClaimedChunk,
    RunnerIdentity,
    claim_chunks,
    finish_chunks,
    give_back,
    release_expired,
    retry_later,
)
from core.errors import Conflict
from core.settings import Settings
from jobrunner.chunk_scoring import score_chunk
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import score_everything

RUNNER = RunnerIdentity("test:1", "test", 1, "fast")
Operation = Callable[[psycopg.Connection], object]


@dataclass
class Scene:
    """One batch mid-way, with a round of two chunks claimed by runner test:1."""

    public_id: str
    batch_id: int
    round: list[ClaimedChunk]


def _scene(db: psycopg.Connection, upload: Callable[..., dict], *, cancelled: bool = False) -> Scene:
    public_id = upload(make_csv(sample_texts(1_000, seed=5)))["batch_id"]
    batch_id = db.execute("SELECT id FROM batches WHERE public_id = %s", (public_id,)).fetchone()[0]
    chunks = claim_chunks(db, "test:1", 60, limit=2)
    assert len(chunks) == 2
    if cancelled:
        with db.transaction():
            batches.cancel(db, public_id)
    return Scene(public_id, batch_id, chunks)


def _finish(scene: Scene) -> Operation:
    scored = [score_chunk(chunk, Settings()) for chunk in scene.round]
    return lambda conn: finish_chunks(conn, scored, RUNNER)


def _cancel(scene: Scene) -> Operation:
    return lambda conn: batches.cancel(conn, scene.public_id)


def _delete(scene: Scene) -> Operation:
    def delete(conn: psycopg.Connection) -> object:
        try:
            batches.delete(conn, scene.public_id)
        except Conflict:
            return "409"
        return "204"

    return delete


def _expire(db: psycopg.Connection, scene: Scene) -> None:
    ids = [c.chunk_id for c in scene.round]
    db.execute("UPDATE chunks SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)", (ids,))


OPERATIONS: dict[str, Callable[[psycopg.Connection, Scene], Operation]] = {
    "finish": lambda db, scene: _finish(scene),
    "cancel": lambda db, scene: _cancel(scene),
    "delete": lambda db, scene: _delete(scene),
    "release_expired": lambda db, scene: (_expire(db, scene), release_expired)[1],
    "give_back": lambda db, scene: lambda conn: give_back(conn, scene.round),
    "retry_later": lambda db, scene: lambda conn: retry_later(conn, scene.round[0], "test", 0),
    "purge": lambda db, scene: (
        db.execute(
            "UPDATE batches SET completed_at = now() - interval '2 days' WHERE id = %s", (scene.batch_id,)
        ),
        lambda conn: batches.purge(conn, 86400),
    )[1],
    "claim": lambda db, scene: lambda conn: claim_chunks(conn, "test:2", 60, limit=2),
    # The done-chunk sweep a runner runs after the commit that finished a batch: the round is
    # finished first, so there are done chunks to sweep.
    "sweep": lambda db, scene: (
        _finish(scene)(db),
        lambda conn: batches.finished(conn, scene.batch_id),
    )[1],
}

PAIRS = [
    ("cancel", "finish", False),
    ("cancel", "release_expired", False),
    ("cancel", "give_back", False),
    ("cancel", "retry_later", False),
    ("claim", "cancel", False),
    ("delete", "finish", True),
    ("purge", "finish", True),
    ("cancel", "sweep", False),
    ("delete", "sweep", True),
]
SCHEDULES = ["a_then_b", "b_then_a", "a_holds_b_waits", "b_holds_a_waits"]
# Where the second session does not wait: it skips the locked chunks (SKIP LOCKED) instead.
# In every other holding schedule the second session must really wait, or the
# schedule would not be the interleaving it claims to be.
SKIPS_INSTEAD_OF_WAITING = {
    ("cancel", "release_expired", "a_holds_b_waits"),
    ("claim", "cancel", "b_holds_a_waits"),
    ("cancel", "sweep", "a_holds_b_waits"),
    ("delete", "sweep", "a_holds_b_waits"),
    # Not a skip: the finish that put the cancelled batch's last chunks in "done" swept them right
    # away, so the sweep under test locks nothing for the delete to wait on.
    ("delete", "sweep", "b_holds_a_waits"),
}


def _blocked(db: psycopg.Connection, pid: int) -> bool:
    row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def _run(database_url: str, db: psycopg.Connection, first: Operation, second: Operation, hold: bool) -> bool:
    """``first`` then ``second``, each in its own transaction; with ``hold``, ``second`` runs while
    ``first`` still holds its locks, and ``first`` commits once ``second`` blocks or is done.
    Whether ``second`` had to wait for ``first``'s locks."""
    with psycopg.connect(database_url) as one, psycopg.connect(database_url) as two:
        for conn in (one, two):
            conn.execute("SET enable_seqscan = off")
        first(one)
        if not hold:
            one.commit()
            second(two)
            two.commit()
            return False
        failure: list[BaseException] = []
        done = threading.Event()

        def run_second() -> None:
            try:
                second(two)
                two.commit()
            except BaseException as exc:  # re-raised in the test's thread
                failure.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=run_second)
        thread.start()
        wait_for(lambda: done.is_set() or _blocked(db, two.info.backend_pid), timeout=20, interval=0.01)
        waited = not done.is_set()
        one.commit()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the second session never finished"
        if failure:
            raise failure[0]
        return waited


def check_invariants(db: psycopg.Connection, batch_id: int) -> None:
    """Every result with its input row, every held or waiting chunk with its rows, counters equal to a
    recount, every input row kept while the batch is."""
    lone = db.execute(
        "SELECT count(*) FROM batch_results r WHERE r.batch_id = %s AND NOT EXISTS "
        "(SELECT 1 FROM batch_inputs i WHERE i.batch_id = r.batch_id AND i.row_number = r.row_number)",
        (batch_id,),
    ).fetchone()[0]
    assert lone == 0, "a result without its input row"
    orphans = db.execute(
        "SELECT c.id, c.state FROM chunks c WHERE c.batch_id = %s AND c.state IN ('claimed', 'ready') "
        "AND (SELECT count(*) FROM batch_inputs r WHERE r.batch_id = c.batch_id "
        "     AND r.row_number BETWEEN c.first_row AND c.last_row) <> c.last_row - c.first_row + 1",
        (batch_id,),
    ).fetchall()
    assert orphans == [], "a chunk without its rows"
    batch = db.execute("SELECT * FROM batches WHERE id = %s", (batch_id,)).fetchone()
    if batch is None:
        return
    recount = db.execute(
        "SELECT count(*) FILTER (WHERE error IS NULL), count(*) FILTER (WHERE error IS NOT NULL), "
        "count(*) FILTER (WHERE vader_label(compound) = 'positive') FROM batch_results WHERE batch_id = %s",
        (batch_id,),
    ).fetchone()
    counted = db.execute(
        "SELECT processed_count, failed_count, positive_count, status FROM batches WHERE id = %s", (batch_id,)
    ).fetchone()
    assert recount == counted[:3]
    waiting = db.execute(
        "SELECT count(*) FROM chunks c JOIN batches b ON b.id = c.batch_id "
        "WHERE c.batch_id = %s AND c.state = 'ready' AND b.status <> 'processing'",
        (batch_id,),
    ).fetchone()[0]
    assert waiting == 0, "a stopped batch's chunk waits in the queue"
    inputs = db.execute("SELECT count(*) FROM batch_inputs WHERE batch_id = %s", (batch_id,)).fetchone()[0]
    kept = db.execute("SELECT deleted_at IS NULL FROM batches WHERE id = %s", (batch_id,)).fetchone()[0]
    if kept:
        assert inputs == 1_000, "an input row of a batch went missing"
    if counted[3] == "processing":
        assert recount[0] + recount[1] <= 1_000


def drain(db: psycopg.Connection, batch_id: int) -> None:
    """Everything a runner would do next: expired leases back, the queue scored, deleted batches reaped."""
    db.execute("UPDATE chunks SET lease_expires_at = now() - interval '1 second' WHERE state = 'claimed'")
    release_expired(db)
    score_everything(db)
    batches.reap(db, budget_seconds=60)
    row = db.execute("SELECT status, deleted_at FROM batches WHERE id = %s", (batch_id,)).fetchone()
    if row is not None:
        assert row[0] != "processing"
    assert db.execute("SELECT count(*) FROM chunks WHERE batch_id = %s", (batch_id,)).fetchone()[0] == 0
    if row is None:  # reaped: every row of it gone
        for table in ("batch_inputs", "batch_results"):
            count = f"SELECT count(*) FROM {table} WHERE batch_id = %s"
            assert db.execute(count, (batch_id,)).fetchone()[0] == 0


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(("a", "b", "cancelled"), PAIRS, ids=[f"{a}-x-{b}" for a, b, _ in PAIRS])
def test_interleaving(a, b, cancelled, schedule, upload, db, database_url):
    scene = _scene(db, upload, cancelled=cancelled)
    op_a, op_b = OPERATIONS[a](db, scene), OPERATIONS[b](db, scene)
    first, second = (op_a, op_b) if schedule in ("a_then_b", "a_holds_b_waits") else (op_b, op_a)
    hold = schedule.endswith("waits")
    waited = _run(database_url, db, first, second, hold)
    assert waited == (hold and (a, b, schedule) not in SKIPS_INSTEAD_OF_WAITING)
    check_invariants(db, scene.batch_id)
    drain(db, scene.batch_id)
    check_invariants(db, scene.batch_id)


@pytest.mark.parametrize(("other", "cancelled"), [("cancel", False), ("delete", True)])
def test_a_finish_stopped_half_way_never_deadlocks_with_cancel_or_delete(
    other, cancelled, upload, db, database_url
):
    """Lock order inside statements: a finish that has locked its chunks and waits to insert a result
    (a third session's uncommitted insert of the same row holds it) while a cancel or a delete
    arrives. Both must wait their turn; a statement taking the batch row before the chunks would
    deadlock here."""
    scene = _scene(db, upload, cancelled=cancelled)
    finish = _finish(scene)
    with (
        psycopg.connect(database_url) as blocker,
        psycopg.connect(database_url, autocommit=True) as one,
        psycopg.connect(database_url, autocommit=True) as two,
    ):
        blocker.execute(
            "INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg) "
            "VALUES (%s, %s, 0, 0, 1, 0)",
            (scene.batch_id, scene.round[-1].first_row),
        )
        outcomes: dict[str, object] = {}

        def run(name: str, conn: psycopg.Connection, operation: Operation) -> None:
            try:
                outcomes[name] = operation(conn)
            except BaseException as exc:  # checked below
                outcomes[name] = exc

        first = threading.Thread(target=run, args=("finish", one, finish))
        first.start()
        wait_for(lambda: _blocked(db, one.info.backend_pid), timeout=20, interval=0.01)
        second = threading.Thread(target=run, args=(other, two, OPERATIONS[other](db, scene)))
        second.start()
        wait_for(lambda: _blocked(db, two.info.backend_pid), timeout=20, interval=0.01)
        blocker.rollback()
        for thread in (first, second):
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert not any(isinstance(value, BaseException) for value in outcomes.values()), outcomes
    assert outcomes["finish"] == {c.chunk_id for c in scene.round}
    check_invariants(db, scene.batch_id)
    drain(db, scene.batch_id)
    check_invariants(db, scene.batch_id)
