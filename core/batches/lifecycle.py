"""A batch's life after its upload: cancel, delete, finished, and the background purge and reaper.

Two rules to keep (docs/design.md, "Guarantees"):

* lock order: every statement that changes a batch's queue state (cancel, delete,
  and the queue's claim, finish and requeues) locks the batch's chunks first, in
  id order, then its batch row; cancel removes queue entries only, never a row;
* deleting is marking: ``deleted_at`` hides the batch at once, and runners remove
  its rows in bounded steps (:func:`reap`, one runner at a time), so no request
  and no transaction deletes a million rows; expired batches are marked the same
  way (:func:`purge`).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql
from psycopg.rows import class_row, namedtuple_row

from core.batches import partitions, summaries
from core.batches.budget import Budget, BudgetSpent
from core.batches.model import Batch
from core.batches.store import batch_statement, get
from core.errors import Conflict
from core.queries import q

log = logging.getLogger(__name__)

#: Rows one reaper step removes from one table, in its own short transaction.
REAP_STEP_ROWS = 5_000
#: Batches purge marks in one go.
PURGE_BATCHES = 100
#: What a 409 for chunks still in runners' hands suggests as a wait before retrying.
RETRY_AFTER_SECONDS = 5


def _finished_already(batch: Batch) -> Conflict:
    return Conflict(
        "Batch already finished",
        f"The batch is {batch.status}; there is nothing to cancel.",
        "batch-finished",
        status_of_batch=batch.status,
    )


def cancel(conn: psycopg.Connection, public_id: str) -> Batch:
    """Stop a processing batch (one statement): ready chunks leave the queue, chunks in runners'
    hands still finish. Cancelling a cancelled batch is a no-op; a finished one a Conflict."""
    batch = get(conn, public_id)
    if batch.status == "cancelled":
        return batch
    if batch.status != "processing":
        raise _finished_already(batch)
    with conn.transaction(), conn.cursor(row_factory=class_row(Batch)) as cur:
        cancelled = cur.execute(batch_statement("batches_cancel"), {"batch_id": batch.id}).fetchone()
        if cancelled is not None:
            finished(conn, cancelled.id)
    if cancelled is None:  # it finished (or was cancelled) meanwhile
        batch = get(conn, public_id)
        if batch.status != "cancelled":
            raise _finished_already(batch)
        return batch
    log.info("batch %s cancelled", public_id)
    return cancelled


def delete(conn: psycopg.Connection, public_id: str) -> None:
    """Remove a finished batch: at once for clients, its rows in the background. A processing one,
    or one with chunks still in runners' hands, is a Conflict: cancel it first."""
    batch = get(conn, public_id)
    with conn.transaction(), conn.cursor(row_factory=namedtuple_row) as cur:
        outcome = cur.execute(q("batches_mark_deleted"), {"batch_id": batch.id}).fetchone()
    if outcome.marked:
        log.info("batch %s deleted; its rows are removed in the background", public_id)
        return
    batch = get(conn, public_id)  # NotFound if it was deleted meanwhile
    if batch.status == "processing":
        raise Conflict(
            "Batch still processing",
            f"The batch is processing; cancel it first (POST /batch/{public_id}/cancel), then delete it.",
            "batch-processing",
            status_of_batch=batch.status,
        )
    raise Conflict(
        "Chunks still in runners' hands",
        f"The batch is {batch.status}, but runners still hold {outcome.in_hand} of its chunk(s), which "
        "finish within a round's time; retry the delete shortly.",
        "chunks-in-hand",
        retry_after=RETRY_AFTER_SECONDS,
        status_of_batch=batch.status,
    )


def finished(conn: psycopg.Connection, batch_id: int) -> None:
    """What happens once when a batch reaches a final state: called by the runner whose finish
    completed it, right after that commit, or by cancel, inside its statement's transaction (which
    already holds every chunk of the batch). Its done chunks leave the queue, and once no runner
    holds one of its chunks, its summary of compound scores is counted and kept (one pass over its
    results; a cancelled batch with chunks in hand leaves that to its first read)."""
    conn.execute(q("chunks_delete_done"), {"batch_id": batch_id})
    summaries.keep(conn, batch_id)


def sweep_done_chunks(conn: psycopg.Connection, limit: int = 10_000) -> int:
    """Drop done chunks that :func:`finished` did not (the runner that finished the batch lost its
    connection after its commit, or that call failed); how many. A housekeeping turn's job."""
    return conn.execute(q("chunks_sweep_done"), {"limit": limit}).rowcount


def purge(
    conn: psycopg.Connection,
    older_than_seconds: float,
    *,
    everything: bool = False,
    budget: Budget | None = None,
) -> int:
    """Mark deleted the finished batches past their expiry: their own ``expires_after`` after they
    finished, or ``older_than_seconds`` for those without one (0: kept). Up to PURGE_BATCHES at a
    time; a batch with a chunk still in a runner's hands waits. With ``everything`` (the operator's
    ``purge --older-than``), every batch finished longer ago than that goes, whatever it asked for.
    How many; :func:`reap` removes their rows. Within ``budget``, its lock waits included, if given."""
    bound = budget.bound if budget is not None else lambda conn: None
    params = {"older_than_seconds": older_than_seconds, "limit": PURGE_BATCHES, "everything": everything}
    marked = 0
    with conn.cursor(row_factory=namedtuple_row) as cur:
        bound(conn)
        for expired in cur.execute(q("batches_expired"), params).fetchall():
            bound(conn)
            with conn.transaction():
                marked += cur.execute(q("batches_mark_deleted"), {"batch_id": expired.id}).fetchone().marked
    return marked


#: The tables that hold a batch's rows, with their keys, in the order the reaper empties them.
_ROW_TABLES = (
    ("batch_result_keys", "row_number"),
    ("batch_results", "row_number"),
    ("batch_row_errors", "error_number"),
    ("batch_inputs", "row_number"),
)


def _reap_statement(name: str, table: str, key: str) -> sql.Composed:
    return sql.SQL(q(name)).format(table=sql.Identifier(table), key=sql.Identifier(key))


def reap(
    conn: psycopg.Connection,
    budget_seconds: float | Budget,
    step: int = REAP_STEP_ROWS,
    older_than_seconds: float = 0,
) -> int:
    """Remove deleted batches' rows in ranges of ``step`` keys, each its own short transaction and one
    range of a primary key, within ``budget_seconds`` (or a turn's :class:`Budget`), every lock wait
    included; the batch row goes last. The number of rows removed. A lock not granted within what is
    left of the budget ends it: logged, or, for a turn's :class:`Budget`, raised as
    :class:`BudgetSpent` (its ``removed`` says how many rows went first), which ends the turn.

    First, partitions whose batches are all deleted are detached and dropped whole
    (:func:`core.batches.partitions.drop_whole`); the rows of a deleted batch whose partition is
    about to go that way wait for it (``older_than_seconds``: RESULTS_TTL, to tell when its other
    batches expire).

    ``conn`` must be in autocommit mode, so each step commits on its own.
    """
    budget = budget_seconds if isinstance(budget_seconds, Budget) else Budget(budget_seconds)
    removed = [0]
    try:
        with budget.applied(conn):
            partitions.drop_whole(conn, budget)
            return _reap_rows(conn, budget, step, older_than_seconds, removed)
    except BudgetSpent as spent:
        spent.removed = removed[0]
        if budget is budget_seconds:
            raise  # the turn's: it ends the turn
        log.log(logging.INFO if spent.lock_wait else logging.DEBUG, "reaping stopped: %s", spent)
        return removed[0]


def _reap_rows(
    conn: psycopg.Connection, budget: Budget, step: int, older_than_seconds: float, removed: list[int]
) -> int:
    """reap's row by row part; ``removed[0]`` counts the rows as they go."""
    params = {"limit": 10, "wait_seconds": partitions.WAIT_SECONDS, "older_than_seconds": older_than_seconds}
    with conn.cursor(row_factory=namedtuple_row) as cur:
        budget.bound(conn)
        doomed = [row.id for row in cur.execute(q("batches_deleted"), params).fetchall()]
        for batch_id in doomed:
            for table, key in _ROW_TABLES:
                budget.bound(conn)
                span = cur.execute(_reap_statement("batches_reap_span", table, key), {"batch_id": batch_id})
                low, high = span.fetchone()
                for start in range(low or 0, (high or -1) + 1, step):
                    if budget.spent():
                        return removed[0]
                    budget.bound(conn)
                    params = {"batch_id": batch_id, "low": start, "high": start + step - 1}
                    statement = _reap_statement("batches_reap_range", table, key)
                    removed[0] += cur.execute(statement, params).rowcount
            # Its chunks (done ones, if any) by themselves first, then the row: chunks before the
            # batch row, as every statement locks them.
            budget.bound(conn)
            cur.execute(q("chunks_delete_done"), {"batch_id": batch_id})
            budget.bound(conn)
            cur.execute(q("batches_reap_row"), {"batch_id": batch_id})
            log.info("batch %s: every row removed", batch_id)
    return removed[0]


def forget_idempotency_keys(conn: psycopg.Connection, ttl_seconds: float) -> int:
    """Drop Idempotency-Keys older than IDEMPOTENCY_TTL, a bounded number per housekeeping turn (an
    upload takes an expired key over by itself)."""
    return conn.execute(
        q("idempotency_keys_forget"), {"ttl_seconds": ttl_seconds, "limit": PURGE_BATCHES * 100}
    ).rowcount
