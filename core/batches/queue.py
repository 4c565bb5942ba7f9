"""The chunk queue in PostgreSQL: claim, finish, retry later, give back, renew, release expired leases.

A claim commits a lease (attempts + 1, a random claim_token, lease_expires_at) instead of holding
a transaction open: the attempt count survives a crash, a frozen runner pins no locks, and a
runner whose lease was taken over cannot finish (its token no longer matches); the results'
primary key backs this up. A claim returns each chunk's rows as two binary arrays; a finish
inserts the scores (binary arrays from numpy) of the chunks still ours, advances the batch and
beats the heartbeat, in one statement. Both are prepared; :func:`finish_and_claim` pipelines them.

Lock order, the same in every statement that changes queue state, so none can deadlock with
another: a batch's chunks in id order, then its batch row (the requeues take it shared).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import psycopg
from psycopg.rows import class_row, namedtuple_row

from core.batches.binary_arrays import float8_array, int4_array, register_arrays
from core.batches.lifecycle import finished
from core.batches.model import FINAL_STATUSES
from core.queries import q

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "chunks_ready"

#: Columns of a chunk's score array, VADER's order.
NEG, NEU, POS, COMPOUND = range(4)


@dataclass
class ClaimedChunk:
    """A leased chunk and its rows, as the claim returned them."""

    chunk_id: int
    batch_id: int
    first_row: int
    last_row: int
    claim_token: UUID
    attempts: int
    row_numbers: list[int]
    texts: list[str]


@dataclass
class ScoredChunk:
    """A chunk's scores, row for row with ``chunk.texts``: a float64 array of shape (rows, 4) in
    VADER's order (neg, neu, pos, compound); a failed row's numbers are NaN and its error is set."""

    chunk: ClaimedChunk
    scores: np.ndarray
    errors: list[str | None] | None = None  # None: no row failed

    @property
    def failed(self) -> int:
        return 0 if self.errors is None else sum(error is not None for error in self.errors)


@dataclass(frozen=True)
class RunnerIdentity:
    """What the runners table records about the runner finishing a chunk."""

    name: str
    host: str
    pid: int
    scorer: str


@dataclass(frozen=True)
class FinishOutcome:
    finished: list[int]
    inserted: int
    vanished: int
    status: str | None
    completed_now: bool


def configure_session(conn: psycopg.Connection) -> None:
    """The session settings the queue statements are written for; a runner sets them once per connection.

    * ``synchronous_commit = off``: a runner's commits need not wait for the
      WAL flush. If PostgreSQL crashes before it, the whole finishing
      statement is lost together, the lease expires and the chunk is scored
      again. Followers are shown a state only once the WAL is flushed past it
      (core.batches.feed.DurableStates), so none of them saw it either.
    * ``enable_seqscan = off``: the queue swings between empty and millions of
      chunks within minutes, and partitions fill from nothing, so statistics
      are nearly always stale; with those of a near-empty table the planner
      would scan. Every runner statement has an index path that is right at
      any size (a test EXPLAINs them under deliberately wrong statistics).
    """
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET enable_seqscan = off")


# -- claim ---------------------------------------------------------------------


def _claim_cursor(conn: psycopg.Connection, runner: str, lease_seconds: float, limit: int) -> psycopg.Cursor:
    """Send the claim (prepared, results in binary); the caller reads its rows."""
    cur = conn.cursor(binary=True, row_factory=class_row(ClaimedChunk))
    params = {"runner": runner, "lease_seconds": float(lease_seconds), "limit": limit}
    cur.execute(q("chunks_claim"), params, prepare=True)
    return cur


def claim_chunks(
    conn: psycopg.Connection, runner: str, lease_seconds: float, limit: int = 1
) -> list[ClaimedChunk]:
    """Lease the next ready chunk and up to ``limit - 1`` more of its batch; [] when the queue is empty."""
    # One statement, so one round trip: its own transaction on the runner's autocommit connection.
    with _claim_cursor(conn, runner, lease_seconds, limit) as cur:
        return cur.fetchall()


def claim_chunk(conn: psycopg.Connection, runner: str, lease_seconds: float) -> ClaimedChunk | None:
    """Lease the next ready chunk, or return None when the queue is empty."""
    chunks = claim_chunks(conn, runner, lease_seconds)
    return chunks[0] if chunks else None


# -- finish --------------------------------------------------------------------


def _finish_params(scored: list[ScoredChunk], runner: RunnerIdentity) -> dict[str, object]:
    batch_id = scored[0].chunk.batch_id
    if any(s.chunk.batch_id != batch_id for s in scored):
        raise ValueError("finish_chunks takes chunks of one batch (as chunks_claim hands them out)")
    scores = scored[0].scores if len(scored) == 1 else np.concatenate([s.scores for s in scored])
    row_numbers = np.concatenate([np.asarray(s.chunk.row_numbers, dtype=np.int32) for s in scored])
    errors = None
    if any(s.errors is not None for s in scored):
        errors = [e for s in scored for e in (s.errors or [None] * len(s.scores))]
    return {
        "chunk_ids": [s.chunk.chunk_id for s in scored],
        "claim_tokens": [s.chunk.claim_token for s in scored],
        "batch_id": batch_id,
        "row_numbers": int4_array(row_numbers),
        "compounds": float8_array(scores[:, COMPOUND]),
        "pos": float8_array(scores[:, POS]),
        "neu": float8_array(scores[:, NEU]),
        "neg": float8_array(scores[:, NEG]),
        "errors": errors,
        "runner": runner.name,
        "host": runner.host,
        "pid": runner.pid,
        "scorer": runner.scorer,
    }


def _finish_cursor(
    conn: psycopg.Connection, scored: list[ScoredChunk], runner: RunnerIdentity
) -> psycopg.Cursor:
    """Send the finish (prepared, arrays in binary); its one row is read with :func:`_after_finish`."""
    cur = conn.cursor(row_factory=class_row(FinishOutcome))
    register_arrays(cur)
    cur.execute(q("chunks_finish"), _finish_params(scored, runner), prepare=True)
    return cur


def _after_finish(conn: psycopg.Connection, batch_id: int, outcome: FinishOutcome) -> set[int]:
    done = set(outcome.finished)
    if outcome.vanished:
        # Only a hand edit of batch_inputs gets here; the statement counted them as failed.
        log.error("chunks %s: %d row(s) were missing from batch_inputs", sorted(done), outcome.vanished)
    # After the commit, in transactions of their own (a caller's, outside autocommit, stays whole): they
    # lock chunks, which the finish's lock order puts before the batch row. The round is committed, so
    # no error is raised (the caller would take the round and its claim for lost): housekeeping drops
    # done chunks left, a read keeps the summary, a session broken here is replaced at its next step.
    try:
        with nullcontext() if conn.autocommit else conn.transaction():
            if outcome.completed_now:
                finished(conn, batch_id)
            elif outcome.status in FINAL_STATUSES:  # a cancelled batch's chunk that was in hand
                conn.execute(q("chunks_delete_done"), {"batch_id": batch_id})
    except psycopg.Error as exc:
        log.warning("batch %s: done chunks or summary left to housekeeping or a read (%s)", batch_id, exc)
    return done


def finish_chunks(conn: psycopg.Connection, scored: list[ScoredChunk], runner: RunnerIdentity) -> set[int]:
    """Commit scored chunks of one batch; the ids of those committed (a chunk whose lease was lost is
    left out, and nothing of it is written).

    One statement (``chunks_finish``), so one round trip and one transaction: every part of it is
    guarded by the lease check, chunk by chunk.
    """
    if not scored:
        return set()
    scope = nullcontext() if conn.autocommit else conn.transaction()  # autocommit: no BEGIN/COMMIT trips
    with scope, _finish_cursor(conn, scored, runner) as cur:
        outcome = cur.fetchone()
    return _after_finish(conn, scored[0].chunk.batch_id, outcome)


def finish_and_claim(
    conn: psycopg.Connection,
    scored: list[ScoredChunk],
    runner: RunnerIdentity,
    lease_seconds: float,
    limit: int,
) -> tuple[set[int], list[ClaimedChunk]]:
    """:func:`claim_chunks` and :func:`finish_chunks` in one pipeline: one round trip for both.

    The two run in one implicit transaction (one Sync): both commit, or neither does and the error
    is raised. ``conn`` must be in autocommit mode. A caller that gets an error may commit the
    round with :func:`finish_chunks` alone.
    """
    if not scored:
        return set(), claim_chunks(conn, runner.name, lease_seconds, limit)
    with conn.pipeline():
        # The finish first, so the transaction keeps the lock order: the claim's new chunks,
        # locked before the finish waited for its own (lower ids) and its batch row, would
        # deadlock with a cancel of that batch, which locks all its chunks in id order. The
        # claim never waits (it skips locked chunks); the batch row stays locked through it.
        finishing = _finish_cursor(conn, scored, runner)
        claiming = _claim_cursor(conn, runner.name, lease_seconds, limit)
        outcome = finishing.fetchone()
        claimed = claiming.fetchall()
    return _after_finish(conn, scored[0].chunk.batch_id, outcome), claimed


def finish_chunk(conn: psycopg.Connection, scored: ScoredChunk, runner: RunnerIdentity) -> bool:
    """Commit one scored chunk; False if its lease was lost and nothing was written."""
    return scored.chunk.chunk_id in finish_chunks(conn, [scored], runner)


# -- hand back, renew, release -------------------------------------------------


def _return(
    conn: psycopg.Connection,
    chunks: list[ClaimedChunk],
    *,
    count_attempt: bool,
    error: str | None = None,
    backoff_seconds: float = 0.0,
) -> int:
    """Hand held chunks back (``chunks_return``): requeued, or closed out when their batch stopped
    processing; how many were still ours."""
    if not chunks:
        return 0
    with conn.cursor(row_factory=namedtuple_row) as cur:
        params = {
            "chunk_ids": [c.chunk_id for c in chunks],
            "claim_tokens": [c.claim_token for c in chunks],
            "count_attempt": count_attempt,
            "error": error[:2000] if error else None,
            "backoff_seconds": backoff_seconds,
        }
        returned = cur.execute(q("chunks_return"), params).fetchall()
    if any(chunk.requeued for chunk in returned):
        conn.execute("SELECT pg_notify(%s, 'returned')", (NOTIFY_CHANNEL,))
    return len(returned)


def retry_later(conn: psycopg.Connection, chunk: ClaimedChunk, error: str, backoff_seconds: float) -> bool:
    """Return a chunk whose scoring failed to the queue after a backoff (the attempt counts), or close
    it out if its batch stopped processing; False if it was no longer ours."""
    return _return(conn, [chunk], count_attempt=True, error=error, backoff_seconds=backoff_seconds) == 1


def give_back(conn: psycopg.Connection, chunks: list[ClaimedChunk]) -> int:
    """Return chunks claimed but not yet scored to the queue, their attempt uncounted; how many."""
    return _return(conn, chunks, count_attempt=False)


def renew_leases(conn: psycopg.Connection, chunks: list[ClaimedChunk], lease_seconds: float) -> set[int]:
    """Extend the leases of the chunks still ours by another ``lease_seconds``; the ids renewed."""
    if not chunks:
        return set()
    params = {
        "chunk_ids": [c.chunk_id for c in chunks],
        "claim_tokens": [c.claim_token for c in chunks],
        "lease_seconds": lease_seconds,
    }
    with conn.cursor(row_factory=namedtuple_row) as cur:
        return {row.id for row in cur.execute(q("chunks_renew_leases"), params)}


def release_expired(conn: psycopg.Connection) -> int:
    """Return chunks with expired leases to the queue (or close them out, if their batch stopped
    processing); how many were released."""
    with conn.cursor(row_factory=namedtuple_row) as cur:
        released = cur.execute(q("chunks_release_expired")).fetchall()
    for chunk in released:
        what = "requeued" if chunk.requeued else "closed out (its batch stopped processing)"
        log.warning(
            "chunk %s of batch %s: lease of %s expired, %s", chunk.id, chunk.batch_id, chunk.claimed_by, what
        )
    if any(chunk.requeued for chunk in released):
        conn.execute("SELECT pg_notify(%s, 'requeued')", (NOTIFY_CHANNEL,))
    return len(released)
