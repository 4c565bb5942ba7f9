"""Partitions of the row tables: made ahead, held by uploads, dropped whole once their batches are gone.

``batch_inputs``, ``batch_results``, ``batch_row_errors`` and ``batch_result_keys`` are
partitioned by range of ``batch_id``, ``batch_partition_span()`` (10) ids a partition;
every query names one batch id, so it reads one partition. The design, and why ranges
of ids, is in docs/design.md, "Retention by partition". Two rules to keep:

* only ``batch_partitions_ensure`` (schema.sql; SECURITY DEFINER, so the tables' owner
  owns them) makes partitions: ahead (:func:`make_ahead`) or by an upload (:func:`make`);
* an upload holds its range (a shared advisory lock) until it commits, and
  :func:`drop_whole` drops only a range it can lock exclusively.
"""

from __future__ import annotations

import logging
import time
from itertools import groupby

import psycopg
from psycopg import sql
from psycopg.errors import InsufficientPrivilege, LockNotAvailable
from psycopg.rows import namedtuple_row

from core.batches.budget import Budget
from core.connections import milliseconds
from core.queries import q

log = logging.getLogger(__name__)

#: How long the rows of a deleted batch wait for their partition to be dropped whole, at most.
WAIT_SECONDS = 3600.0
#: The longest a detach or a drop waits for a lock, per attempt (less when less is left of the
#: reaper's budget), and the attempts per turn.
LOCK_TIMEOUT_SECONDS = 1.0
LOCK_ATTEMPTS = 2
#: The advisory lock class of a range (batch_partitions_ensure holds it shared); key = first id / span.
RANGE_LOCK_CLASS = 20560


def hold(conn: psycopg.Connection, batch_id: int) -> bool:
    """Keep the purge off the batch's partitions until commit; whether they exist already."""
    params = {"batch_id": batch_id, "make": False}
    return conn.execute(q("batch_results_partitions_ensure"), params).fetchone()[0]


def make(conn: psycopg.Connection, batch_id: int) -> None:
    """Make the batch's partitions if they are missing (inside the caller's transaction)."""
    conn.execute(q("batch_results_partitions_ensure"), {"batch_id": batch_id, "make": True})


def make_ahead(conn: psycopg.Connection) -> None:
    """Make the partitions of the next batch ids ahead of the uploads (an autocommit connection).

    The range's lock is waited for at most LOCK_TIMEOUT_SECONDS: an upload that is making the
    same range's partitions holds it until it commits, and this runs on the runner's database
    thread, which commits and claims rounds. Past it, the turn is skipped (the upload makes
    them, or the next turn does). The ATTACH itself keeps batch_partitions_ensure's own bound
    (2 s a try, five tries: about 12 s behind a detach in progress, which is rare)."""
    try:
        with conn.transaction():
            timeout = str(milliseconds(LOCK_TIMEOUT_SECONDS))
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
            conn.execute(q("batch_results_partitions_make_ahead"))
    except LockNotAvailable as exc:
        log.info("partitions not made ahead this turn: %s", exc.diag.message_primary)
    except InsufficientPrivilege as exc:  # the runner's role lost the owner's privileges since it started
        log.warning("cannot make partitions ahead (%s); uploads make their own", exc.diag.message_primary)


def upkeep_refusal(conn: psycopg.Connection) -> str | None:
    """Why this connection's login cannot keep the partitions (None: it can, or the tables are not
    made yet). Detaching needs ``DETACH PARTITION … CONCURRENTLY``, which no function can run (it
    cannot run inside a transaction), so only the tables' owner, a member of its role with its
    privileges, or a superuser can drop a range: a runner is one of them (jobrunner.__main__)."""
    with conn.cursor(row_factory=namedtuple_row) as cur:
        keeper = cur.execute(q("batch_results_partitions_keeper")).fetchone()
    if keeper.may_keep:
        return None
    return (
        f"DATABASE_URL's role {keeper.login} may not make or drop the partitions of batch_inputs, "
        f"batch_results, batch_row_errors and batch_result_keys, which {keeper.owner} owns, so deleted "
        f"batches' partitions would never be dropped: run runners as {keeper.owner}, a superuser, or a "
        f"login granted its role (as a superuser: GRANT {keeper.owner} TO {keeper.login};)"
    )


def _span(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT batch_partition_span()").fetchone()[0]


#: The comment a partition gets right before it is detached: the mark of an orphan if the runner
#: stops before the drop (batch_results_partitions_orphaned; no other table carries it).
DROPPING = "Being detached and dropped by the purge (core/batches/partitions.py)."


def _detach_and_drop(
    conn: psycopg.Connection, table: str, partition: str, pending: bool, budget: Budget
) -> None:
    parent, part = sql.Identifier(table), sql.Identifier(partition)
    # Once an autovacuum worker has to be waited out, the partition is finished in this turn
    # whatever is left of the budget: left for the next one, it would find the worker back.
    grace = _autovacuum_wait(conn, partition)
    budget.bound(conn, LOCK_TIMEOUT_SECONDS, at_least=grace)
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(part, sql.Literal(DROPPING)))
    how = sql.SQL("FINALIZE" if pending else "CONCURRENTLY")
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        budget.bound(conn, LOCK_TIMEOUT_SECONDS, at_least=grace)
        try:
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(parent, part, how))
            break
        except LockNotAvailable as exc:
            if attempt == LOCK_ATTEMPTS or budget.ended_by(exc) is not None:
                raise
            # A CONCURRENTLY cut short leaves the partition pending: finish that one instead.
            budget.bound(conn, at_least=grace)
            pending = conn.execute(
                "SELECT detach_pending FROM batch_partitions WHERE partition = %s", (partition,)
            ).fetchone()
            how = sql.SQL("FINALIZE" if pending and pending[0] else "CONCURRENTLY")
            if pending is None:  # detached after all
                break
            time.sleep(min(0.1, max(0.0, budget.left())))
    budget.bound(conn, LOCK_TIMEOUT_SECONDS, at_least=grace)
    conn.execute(sql.SQL("DROP TABLE {}").format(part))


def _autovacuum_wait(conn: psycopg.Connection, partition: str) -> float:
    """How long a lock request on ``partition`` must be able to wait: past deadlock_timeout when
    an autovacuum worker holds it (PostgreSQL cancels the worker for a request waiting that long;
    a shorter wait gives up first, turn after turn, for as long as a big partition's vacuum
    lasts), else 0 (the budget decides)."""
    return conn.execute(q("batch_results_partition_autovacuum_wait"), {"partition": partition}).fetchone()[0]


def _drop_orphans(conn: psycopg.Connection, budget: Budget, limit: int) -> None:
    """Drop the partitions a stopped runner detached but did not drop, within ``budget``; one that
    cannot go is logged and left for the operator."""
    params = {"limit": limit, "mark": DROPPING}
    budget.bound(conn)
    for (orphan,) in conn.execute(q("batch_results_partitions_orphaned"), params).fetchall():
        if budget.spent():
            return
        budget.bound(conn, LOCK_TIMEOUT_SECONDS)
        try:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(orphan)))
        except LockNotAvailable as exc:
            if budget.ended_by(exc) is not None:
                raise
            log.info("partition %s, detached earlier, not dropped this turn: %s", orphan, exc)
            continue
        except psycopg.Error as exc:  # e.g. a view someone made on it
            log.warning("partition %s, detached earlier, cannot be dropped: %s", orphan, exc)
            continue
        log.info("partition %s, detached earlier but not dropped: dropped", orphan)


def drop_whole(conn: psycopg.Connection, budget: Budget, limit: int = 20) -> int:
    """Detach and drop the partitions whose batches are all deleted or gone, within ``budget``
    (its lock waits included); how many ranges went. ``conn`` must be in autocommit mode (DETACH …
    CONCURRENTLY cannot run in a transaction block). The reaper then removes the batch rows.
    Partitions left detached and not dropped by a runner that stopped in between go first.
    A lock the budget's rest could not wait for raises :class:`~core.batches.budget.BudgetSpent`."""
    budget.bound(conn)
    with conn.cursor(row_factory=namedtuple_row) as cur:
        found = cur.execute(q("batch_results_partitions_droppable"), {"limit": limit}).fetchall()
    _drop_orphans(conn, budget, limit)
    return _drop_ranges(conn, found, budget, limit) if found else 0


def _drop_ranges(conn: psycopg.Connection, found: list, budget: Budget, limit: int) -> int:
    """drop_whole's work on the droppable partitions ``found``, range by range, each under its locks."""
    span = _span(conn)
    dropped = 0
    for (first, end), parts in groupby(found, key=lambda p: (p.first_batch, p.end_batch)):
        if budget.spent():
            break
        # Every range key the partition covers: one, or for the legacy partition (first NULL,
        # batches from before 0012, up to the next multiple of the span) all from 0, since new
        # batch ids can still land in its last range.
        keys = list(range(0, -(-end // span))) if first is None else [first // span]
        held = []
        for key in keys:
            if conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (RANGE_LOCK_CLASS, key)).fetchone()[0]:
                held.append(key)
            else:
                break
        try:
            if len(held) < len(keys):
                continue  # an upload in flight writes to it: not droppable after all
            # Again, holding the range: an upload may have committed its batch since.
            budget.bound(conn)
            with conn.cursor(row_factory=namedtuple_row) as cur:
                still = cur.execute(q("batch_results_partitions_droppable"), {"limit": limit}).fetchall()
            if not any((p.first_batch, p.end_batch) == (first, end) for p in still):
                continue
            for part in parts:
                _detach_and_drop(conn, part.table_name, part.partition, part.detach_pending, budget)
            dropped += 1
            log.info("batches %s to %d: partitions detached and dropped", first or "(first)", end - 1)
        except LockNotAvailable as exc:
            if budget.ended_by(exc) is not None:
                raise
            log.info("partitions of batches to %d not dropped this turn: %s", end - 1, exc)
            break
        except InsufficientPrivilege as exc:
            log.warning("partitions of batches to %d not dropped this turn: %s", end - 1, exc)
            break
        finally:
            for key in held:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (RANGE_LOCK_CLASS, key))
    return dropped
