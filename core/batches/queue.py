"""The chunk queue in PostgreSQL: claim, finish, retry later, give back, release expired leases.

Claim design: a committed lease, not an open transaction. Claiming a chunk
commits ``state='claimed'``, ``attempts + 1``, a random ``claim_token`` and
``lease_expires_at``. Scoring happens outside any transaction. Finishing is
one statement (so one round trip and one transaction) that flips the chunk to
done only if it still carries our token and, only then, moves its rows from
staging into results, advances the batch and beats the runner's heartbeat.
Why a lease:

* the attempt count is committed at claim time, so it survives a crash (a
  row lock held by an open transaction would roll it back), which is what
  lets a chunk that keeps failing, or keeps killing its runners, be isolated
  at MAX_ATTEMPTS and given up past it (see ``jobrunner.chunk_scoring``);
* no transaction stays open while Python scores, so a frozen or slow runner
  pins no locks and no snapshot;
* a runner that dies at any instant either committed all of the finishing
  statement or none of it: its chunk comes back to the queue when the lease
  expires (any runner runs ``chunks_release_expired`` every
  RELEASE_EXPIRED_SECONDS), and a runner whose lease expired and was taken
  over cannot finish (its token no longer matches), so nothing is lost and
  nothing is written twice (the primary key of ``batch_results`` backs this
  up). Takeover: LEASE_SECONDS + RELEASE_EXPIRED_SECONDS after the last renewal,
  plus a round of the runner that requeues it.

Rounds: a claim leases the head of the queue and up to CLAIM_CHUNKS - 1 more
chunks of the same batch, and one finishing statement commits them all. Each
chunk keeps its own token and attempt count, so everything above holds chunk
by chunk (a lost lease drops only that chunk). One batch per round keeps the
finish to one batch row lock, as for a single chunk, so runners cannot
deadlock on two batches' rows.

Leases are renewed by token while a round is scored (jobrunner.lease_keeper), so
a round slower than LEASE_SECONDS still commits; a runner that stops renewing
loses its chunks as above.

Lock order, the same in every statement that changes queue state, so none of
them can deadlock with another: a batch's chunks first, in id order; then
its staged rows; then its batch row (the requeues take it shared, to see
whether the batch still processes). The claim takes only chunks it can lock
at once (SKIP LOCKED) and skips chunks of batches that are not processing.
A chunk handed back (retry later, give back, expired lease) whose batch was
cancelled meanwhile is closed out, with its staged rows, instead of
requeued, so no chunk of a stopped batch waits in the queue forever.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from uuid import UUID

import pandas as pd
import psycopg
from psycopg.rows import namedtuple_row

from core import batches
from core.batches import FINAL_STATUSES
from core.queries import q

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "chunks_ready"
_FLOAT_COLUMNS = ("score", "compound", "pos", "neu", "neg")


@dataclass
class ClaimedChunk:
    """A leased chunk and its staged rows."""

    chunk_id: int
    batch_id: int
    first_row: int
    last_row: int
    claim_token: UUID
    attempts: int
    rows: pd.DataFrame  # row_number, text


@dataclass
class ScoredChunk:
    chunk: ClaimedChunk
    # The score_texts columns, row for row with chunk.rows; when some rows
    # failed, also error (None for the scored rows).
    scores: pd.DataFrame
    failed: int = 0  # rows whose scoring failed (sentiment None, error set)


@dataclass(frozen=True)
class RunnerIdentity:
    """What the runners table records about the runner finishing a chunk."""

    name: str
    host: str
    pid: int
    scorer: str


def configure_session(conn: psycopg.Connection) -> None:
    """The session settings the queue statements are written for; a runner sets them once per connection.

    * ``synchronous_commit = off``: a runner's commits need not wait for the
      WAL flush. If PostgreSQL crashes before it, the whole finishing
      statement (results, chunk state, progress) is lost together, the lease
      expires and the chunk is scored again; nothing outside the database saw
      it. It saves a disk flush per claim and per finish.
    * ``enable_seqscan = off``: staging and the queue swing between empty and
      millions of rows within minutes, so their statistics are nearly always
      stale, and with the statistics of a near-empty table the planner reads
      all of staging (or of the queue) for every chunk. Every runner statement
      has an index path that is right at any size; this makes the planner
      take it (a test EXPLAINs them under deliberately wrong statistics).
    """
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET enable_seqscan = off")


def claim_chunks(
    conn: psycopg.Connection, runner: str, lease_seconds: float, limit: int = 1
) -> list[ClaimedChunk]:
    """Lease the next ready chunk and up to ``limit - 1`` more of its batch; [] when the queue is empty."""
    # One statement, so one round trip: it is its own transaction on the
    # runner's autocommit connection.
    with conn.cursor(row_factory=namedtuple_row) as cur:
        params = {"runner": runner, "lease_seconds": lease_seconds, "limit": limit}
        records = cur.execute(q("chunks_claim"), params).fetchall()
    chunks = []
    for _, group in groupby(records, key=attrgetter("chunk_id")):
        rows = list(group)
        lease = rows[0]
        rows = [r for r in rows if r.row_number is not None]  # none when its rows went missing
        frame = pd.DataFrame({"row_number": [r.row_number for r in rows], "text": [r.text for r in rows]})
        chunks.append(
            ClaimedChunk(
                lease.chunk_id,
                lease.batch_id,
                lease.first_row,
                lease.last_row,
                lease.claim_token,
                lease.attempts,
                frame,
            )
        )
    return chunks


def claim_chunk(conn: psycopg.Connection, runner: str, lease_seconds: float) -> ClaimedChunk | None:
    """Lease the next ready chunk, or return None when the queue is empty."""
    chunks = claim_chunks(conn, runner, lease_seconds)
    return chunks[0] if chunks else None


def _column(scores: pd.DataFrame, name: str, nullable: bool) -> list:
    if not nullable:
        return scores[name].tolist()
    column = scores[name].astype(object)
    return column.where(column.notna(), None).tolist()


def _array_text(values: list) -> str:
    """A PostgreSQL array literal of numbers or plain words: ``{1,2.5,positive}``.

    psycopg adapts a list element by element in Python; this is one join.
    A float's str is its shortest round-trip form, which PostgreSQL reads
    back as the same double.
    """
    return "{" + ",".join(map(str, values)) + "}"


def _score_arrays(scores: pd.DataFrame, failed: int) -> dict[str, object]:
    """The chunk_finish arrays. Without failed rows (the usual case) as array
    literals; with them as lists, so psycopg writes the NULLs and quotes the errors."""
    names = {"sentiments": "sentiment", "scores": "score", "compounds": "compound"}
    names.update(pos="pos", neu="neu", neg="neg")
    if failed:
        arrays: dict[str, object] = {key: _column(scores, name, True) for key, name in names.items()}
        arrays["errors"] = _column(scores, "error", True)
    else:
        arrays = {key: _array_text(scores[name].tolist()) for key, name in names.items()}
        arrays["errors"] = "{" + ",".join(["NULL"] * len(scores)) + "}"
    return arrays


def finish_chunks(conn: psycopg.Connection, scored: list[ScoredChunk], runner: RunnerIdentity) -> set[int]:
    """Commit scored chunks of one batch; the ids of those committed (a chunk whose
    lease was lost is left out, and nothing of it is written).

    One statement (``chunks_finish``), so one round trip and one transaction:
    every part of it is guarded by the lease check, chunk by chunk.
    """
    if not scored:
        return set()
    batch_id = scored[0].chunk.batch_id
    if any(s.chunk.batch_id != batch_id for s in scored):
        raise ValueError("finish_chunks takes chunks of one batch (as chunks_claim hands them out)")
    scores = scored[0].scores if len(scored) == 1 else pd.concat([s.scores for s in scored])
    failed = sum(s.failed for s in scored)
    row_numbers = [n for s in scored for n in s.chunk.rows["row_number"].tolist()]
    scope = nullcontext() if conn.autocommit else conn.transaction()  # autocommit: no BEGIN/COMMIT trips
    with scope, conn.cursor(row_factory=namedtuple_row) as cur:
        outcome = cur.execute(
            q("chunks_finish"),
            {
                "chunk_ids": [s.chunk.chunk_id for s in scored],
                "claim_tokens": [s.chunk.claim_token for s in scored],
                "batch_id": batch_id,
                "first_row": min(s.chunk.first_row for s in scored),
                "last_row": max(s.chunk.last_row for s in scored),
                "row_numbers": _array_text(row_numbers),
                **_score_arrays(scores, failed),
                "runner": runner.name,
                "host": runner.host,
                "pid": runner.pid,
                "scorer": runner.scorer,
            },
        ).fetchone()
        done = set(outcome.finished)
        if outcome.vanished:
            # Only a hand edit of staging gets here; the statement counted them as failed.
            log.error("chunks %s: %d row(s) were missing from staging", sorted(done), outcome.vanished)
    # After the commit, in transactions of their own: they lock chunks, which the finish's lock
    # order puts before the batch row it has just locked.
    if outcome.completed_now:
        batches.finished(conn, batch_id)
    elif outcome.status in FINAL_STATUSES:  # a cancelled batch's chunk that was in hand
        conn.execute(q("chunks_delete_done"), {"batch_id": batch_id})
    return done


def finish_chunk(conn: psycopg.Connection, scored: ScoredChunk, runner: RunnerIdentity) -> bool:
    """Commit one scored chunk; False if its lease was lost and nothing was written."""
    return scored.chunk.chunk_id in finish_chunks(conn, [scored], runner)


def _return(
    conn: psycopg.Connection,
    chunks: list[ClaimedChunk],
    *,
    count_attempt: bool,
    error: str | None = None,
    backoff_seconds: float = 0.0,
) -> int:
    """Hand held chunks back (``chunks_return``): requeued, or closed out with their staged rows
    when their batch stopped processing; how many were still ours."""
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
