"""The runner loop: claim a chunk, score it, commit its results, repeat.

Claim design: a committed lease, not an open transaction. Claiming a chunk
commits ``state='claimed'``, ``attempts + 1``, a random ``claim_token`` and
``lease_expires_at``. Scoring happens outside any transaction. Finishing is
one transaction that (1) flips the chunk to done only if it still carries our
token, (2) moves its rows from staging into results and (3) advances the
batch. Why a lease:

* the attempt count is committed at claim time, so it survives a crash (a
  row lock held by an open transaction would roll it back);
* no transaction stays open while Python scores, so a frozen or slow runner
  pins no locks and no snapshot;
* a runner that dies at any instant either committed all three steps or none:
  its chunk comes back to the queue when the lease expires (any runner runs
  ``chunks_release_expired`` every ``RELEASE_EXPIRED_SECONDS``), and a runner
  whose lease expired and was taken over cannot finish (its token no longer
  matches), so nothing is lost and nothing is written twice. The primary key
  of ``batch_results`` backs this up.

Waiting: the runner LISTENs on ``chunks_ready`` (the upload transaction
NOTIFYs) and polls every ``POLL_SECONDS`` in case a notification was missed.
SIGTERM or SIGINT while scoring finishes and commits the chunk in hand, then
exits; while idle it exits at once. A lost database connection is retried
with backoff, and scores already computed are committed after reconnecting
if the lease is still ours.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from uuid import UUID

import pandas as pd
import psycopg

from jobrunner.migrations import migrate
from jobrunner.queries import q
from jobrunner.scoring import polarity_function, score_texts
from jobrunner.settings import Settings

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "chunks_ready"


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
    scores: pd.DataFrame  # row_number plus the score_texts columns


class _StopWaiting(Exception):
    """Raised by the signal handler to leave an idle wait at once."""


def default_runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_chunk(conn: psycopg.Connection, runner: str, lease_seconds: float) -> ClaimedChunk | None:
    """Lease the next ready chunk, or return None when the queue is empty."""
    with conn.transaction():
        records = conn.execute(
            q("chunks_claim"), {"runner": runner, "lease_seconds": lease_seconds}
        ).fetchall()
    if not records:
        return None
    first = records[0]
    rows = pd.DataFrame([(r[6], r[7]) for r in records], columns=["row_number", "text"])
    return ClaimedChunk(first[0], first[1], first[2], first[3], first[4], first[5], rows)


def score_chunk(chunk: ClaimedChunk, scorer: str) -> ScoredChunk:
    """Score the chunk's rows with VADER over the pandas frame."""
    scores = score_texts(chunk.rows["text"].tolist(), scorer=scorer)
    scores.insert(0, "row_number", chunk.rows["row_number"].to_numpy())
    return ScoredChunk(chunk, scores)


def finish_chunk(conn: psycopg.Connection, scored: ScoredChunk) -> bool:
    """Commit a scored chunk; False if our lease was lost and nothing was written."""
    chunk, scores = scored.chunk, scored.scores
    counts = scores["sentiment"].value_counts()
    with conn.transaction():
        if (
            conn.execute(
                q("chunks_finish"), {"chunk_id": chunk.chunk_id, "claim_token": chunk.claim_token}
            ).fetchone()
            is None
        ):
            return False
        moved = conn.execute(
            q("batch_results_move_scored"),
            {
                "batch_id": chunk.batch_id,
                "first_row": chunk.first_row,
                "last_row": chunk.last_row,
                "row_numbers": scores["row_number"].tolist(),
                "sentiments": scores["sentiment"].tolist(),
                "scores": scores["score"].tolist(),
                "compounds": scores["compound"].tolist(),
                "pos": scores["pos"].tolist(),
                "neu": scores["neu"].tolist(),
                "neg": scores["neg"].tolist(),
            },
        ).rowcount
        if moved != len(scores):
            # Staging and the chunk disagree: refuse to count a partial chunk.
            raise RuntimeError(f"chunk {chunk.chunk_id}: moved {moved} rows, expected {len(scores)}")
        conn.execute(
            q("batches_advance"),
            {
                "batch_id": chunk.batch_id,
                "scored": len(scores),
                "positive": int(counts.get("positive", 0)),
                "negative": int(counts.get("negative", 0)),
                "neutral": int(counts.get("neutral", 0)),
            },
        )
    return True


def release_expired(conn: psycopg.Connection) -> int:
    """Return chunks with expired leases to the queue; how many were released."""
    released = conn.execute(q("chunks_release_expired")).fetchall()
    for chunk_id, batch_id, holder in released:
        log.warning("chunk %s of batch %s: lease of %s expired, requeued", chunk_id, batch_id, holder)
    if released:
        conn.execute("SELECT pg_notify(%s, 'requeued')", (NOTIFY_CHANNEL,))
    return len(released)


class Runner:
    """One runner process: the loop plus its signal handling and reconnection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.runner_name or default_runner_name()
        self.stopping = False
        self._idle = False
        self._in_hand: ScoredChunk | None = None
        self._next_release = 0.0
        self._migrated = not settings.migrate_on_start
        self.chunks_done = 0

    # -- signals -------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info(
            "received %s, stopping %s",
            signal.Signals(signum).name,
            "now" if self._idle else "after the chunk in hand",
        )
        self.stopping = True
        if self._idle:
            raise _StopWaiting

    # -- loop ----------------------------------------------------------------
    def run(self) -> int:
        """Work until asked to stop; the process exit code."""
        polarity_function(self.settings.scorer)  # fail fast on an unknown SCORER
        log.info(
            "runner %s starting (scorer=%s, lease=%ss)",
            self.name,
            self.settings.scorer,
            self.settings.lease_seconds,
        )
        backoff = 0.5
        while not self.stopping:
            try:
                if not self._migrated:
                    migrate(self.settings.database_url)
                    self._migrated = True
                with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    self._work(conn)
            except _StopWaiting:
                break
            except psycopg.OperationalError as exc:
                if self.stopping and self._in_hand is None:
                    break
                log.warning(
                    "database unavailable (%s); retrying in %.1fs",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    backoff,
                )
                try:
                    self._sleep(backoff)
                except _StopWaiting:
                    break
                backoff = min(backoff * 2, 5.0)
        log.info("runner %s stopped after %d chunk(s)", self.name, self.chunks_done)
        return 0

    def _sleep(self, seconds: float) -> None:
        self._idle = True
        try:
            time.sleep(seconds)
        finally:
            self._idle = False

    def _work(self, conn: psycopg.Connection) -> None:
        while True:
            if self._in_hand is not None:
                self._commit(conn, self._in_hand)
            if self.stopping:
                return
            now = time.monotonic()
            if now >= self._next_release:
                release_expired(conn)
                self._next_release = now + self.settings.release_expired_seconds
            chunk = claim_chunk(conn, self.name, self.settings.lease_seconds)
            if chunk is None:
                self._wait(conn)
                continue
            started = time.perf_counter()
            self._in_hand = score_chunk(chunk, self.settings.scorer)
            self._commit(conn, self._in_hand, started)

    def _commit(self, conn: psycopg.Connection, scored: ScoredChunk, started: float | None = None) -> None:
        chunk = scored.chunk
        if finish_chunk(conn, scored):
            self.chunks_done += 1
            if started is not None:
                log.debug(
                    "chunk %s of batch %s: %d rows in %.1f ms",
                    chunk.chunk_id,
                    chunk.batch_id,
                    len(scored.scores),
                    (time.perf_counter() - started) * 1e3,
                )
        else:
            log.warning(
                "chunk %s of batch %s: lease lost before commit, results dropped",
                chunk.chunk_id,
                chunk.batch_id,
            )
        self._in_hand = None

    def _wait(self, conn: psycopg.Connection) -> None:
        """Block until a NOTIFY arrives or the poll interval passes."""
        self._idle = True
        try:
            if self.stopping:
                raise _StopWaiting
            timeout = min(self.settings.poll_seconds, self.settings.release_expired_seconds)
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
        finally:
            self._idle = False
