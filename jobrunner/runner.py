"""The runner process's loop: claim a chunk, score it, commit it, repeat.

The queue's guarantees (leases, guarded finish) live in ``jobrunner.chunks``;
this module owns the process around them:

* waiting: LISTEN on ``chunks_ready`` (the upload transaction NOTIFYs) plus a
  poll every POLL_SECONDS in case a notification was missed;
* housekeeping every RELEASE_EXPIRED_SECONDS (``jobrunner.housekeeping``):
  requeue chunks whose lease ran out, forget runners whose heartbeat stopped,
  purge and reap deleted batches;
* leases: renewed while a round is scored (``jobrunner.lease_keeper``);
* failures: a chunk whose scoring raises goes back to the queue with an
  exponential backoff (RETRY_BACKOFF_SECONDS, doubling, at most 60 s); see
  ``jobrunner.chunk_scoring`` for what happens at MAX_ATTEMPTS. Any other
  exception in a round is logged, the round's chunks go back to the queue
  (the attempt counted) and the runner backs off and goes on: only signals
  (and nothing else) stop it;
* signals: SIGTERM or SIGINT while scoring finishes and commits the chunk in
  hand, then exits 0; while idle it exits at once;
* outages: a lost database connection is retried with backoff; scores
  already computed are committed after reconnecting if the lease is still ours;
* the ``runners`` table: the runner registers at start, beats its heartbeat
  with every finished chunk and every HEARTBEAT_SECONDS when idle, and removes
  its entry when it exits cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from types import FrameType

import psycopg

from core.connections import conninfo
from core.migrations import migrate
from core.queries import q
from core.settings import Settings
from jobrunner import metrics
from jobrunner.chunk_scoring import score_chunk
from jobrunner.chunks import (
    NOTIFY_CHANNEL,
    ClaimedChunk,
    RunnerIdentity,
    ScoredChunk,
    claim_chunks,
    configure_session,
    finish_chunks,
    give_back,
    retry_later,
)
from jobrunner.housekeeping import housekeep
from jobrunner.lease_keeper import LeaseKeeper
from jobrunner.round_report import report_round
from jobrunner.scoring import scorer_function

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


class _StopWaiting(Exception):
    """Raised by the signal handler to leave an idle wait at once."""


def default_runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Runner:
    """One runner process: the loop plus its signal handling and reconnection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.runner_name or default_runner_name()
        self.identity = RunnerIdentity(self.name, socket.gethostname(), os.getpid(), settings.scorer)
        self.stopping = False
        self._idle = False
        self._in_hand: list[ScoredChunk] = []  # scored, not yet committed
        self._claimed: list[ClaimedChunk] = []  # the round being scored
        self.lease_keeper = LeaseKeeper(conninfo(settings, "runner"), settings.lease_seconds)
        self._next_housekeeping = 0.0
        self._next_heartbeat = 0.0
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
        scorer_function(self.settings.scorer)  # fail fast on an unknown SCORER
        log.info(
            "runner %s starting (scorer=%s, lease=%ss, max attempts=%d)",
            self.name,
            self.settings.scorer,
            self.settings.lease_seconds,
            self.settings.max_attempts,
        )
        self.lease_keeper.start()
        backoff = 0.5
        while not self.stopping:
            try:
                if not self._migrated:
                    migrate(self.settings.database_url)
                    self._migrated = True
                with psycopg.connect(conninfo(self.settings, "runner"), autocommit=True) as conn:
                    configure_session(conn)
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    self._work(conn)
                    self._leave(conn)
            except _StopWaiting:
                break
            except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout) as exc:
                # The round being scored is abandoned (what is scored and in hand is committed after
                # reconnecting): its leases must expire, not be renewed for a round nobody works on.
                self.lease_keeper.hold(self._in_hand_chunks())
                self._claimed = []
                if self.stopping and not self._in_hand:
                    break
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("database unavailable (%s); retrying in %.1fs", first_line, backoff)
                try:
                    self._sleep(backoff)
                except _StopWaiting:
                    break
                backoff = min(backoff * 2, 5.0)
        self.lease_keeper.stop()
        log.info("runner %s stopped after %d chunk(s)", self.name, self.chunks_done)
        return 0

    def _sleep(self, seconds: float) -> None:
        self._idle = True
        try:
            time.sleep(seconds)
        finally:
            self._idle = False

    def _leave(self, conn: psycopg.Connection) -> None:
        with contextlib.suppress(psycopg.Error):  # else the entry expires by itself
            conn.execute(q("runners_remove"), {"name": self.name})

    def _work(self, conn: psycopg.Connection) -> None:
        """Rounds until asked to stop. A round that raises anything but a lost connection is logged,
        its chunks go back to the queue (the attempt counted), and the runner backs off and goes on:
        only signals stop it."""
        failures = 0
        while not self.stopping or self._in_hand:
            try:
                self._round(conn)
                failures = 0
            except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout, _StopWaiting):
                raise
            except Exception:
                failures += 1
                backoff = min(self.settings.retry_backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
                log.exception("a round failed; its chunks go back to the queue; next round in %.1fs", backoff)
                self._hand_back(conn)
                self._sleep(backoff)

    def _round(self, conn: psycopg.Connection) -> None:
        """Commit what is in hand, then claim, score and commit one round (or wait for work)."""
        if self._in_hand:
            self._commit(conn, self._in_hand)
        if self.stopping:
            return
        self._housekeeping(conn)
        started = time.perf_counter()
        chunks = claim_chunks(conn, self.name, self.settings.lease_seconds, self.settings.claim_chunks)
        if not chunks:
            self._wait(conn)
            return
        self._claimed = chunks
        self.lease_keeper.hold(chunks)
        claimed = time.perf_counter()
        scored = []
        for index, chunk in enumerate(chunks):
            if self.stopping:
                # Asked to stop: commit what is scored, hand the rest straight back.
                returned = give_back(conn, chunks[index:])
                log.info("stopping: %d claimed chunk(s) given back unscored", returned)
                break
            if (item := self._score(conn, chunk)) is not None:
                scored.append(item)
        self._in_hand = scored
        self._commit(conn, scored, (started, claimed, time.perf_counter()))

    def _in_hand_chunks(self) -> list[ClaimedChunk]:
        return [item.chunk for item in self._in_hand]

    def _hand_back(self, conn: psycopg.Connection) -> None:
        """After a failed round: its chunks back to the queue with a backoff, or let their leases expire."""
        chunks, self._claimed, self._in_hand = self._claimed, [], []
        self.lease_keeper.release()
        backoff = self.settings.retry_backoff_seconds
        for chunk in chunks:
            with contextlib.suppress(psycopg.Error):
                retry_later(conn, chunk, "the round failed in the runner (see its log)", backoff)

    def _score(self, conn: psycopg.Connection, chunk: ClaimedChunk) -> ScoredChunk | None:
        """Score one claimed chunk; if scoring raises, requeue it after a backoff (the attempt counts)."""
        try:
            return score_chunk(chunk, self.settings)
        except Exception as exc:
            backoff = min(
                self.settings.retry_backoff_seconds * 2 ** (chunk.attempts - 1), MAX_BACKOFF_SECONDS
            )
            log.warning(
                "chunk %s of batch %s failed on attempt %d (%s); retrying in %.1fs",
                chunk.chunk_id,
                chunk.batch_id,
                chunk.attempts,
                exc,
                backoff,
            )
            retry_later(conn, chunk, f"attempt {chunk.attempts}: {type(exc).__name__}: {exc}", backoff)
            metrics.CHUNKS.labels("retried").inc()
            return None

    def _housekeeping(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            conn.execute(
                q("runners_heartbeat"),
                {
                    "name": self.name,
                    "host": self.identity.host,
                    "pid": self.identity.pid,
                    "scorer": self.identity.scorer,
                    "chunks": 0,
                    "rows": 0,
                },
            )
            self._next_heartbeat = now + self.settings.heartbeat_seconds
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + self.settings.release_expired_seconds
        housekeep(conn, self.settings)

    def _commit(
        self,
        conn: psycopg.Connection,
        scored: list[ScoredChunk],
        times: tuple[float, float, float] | None = None,
    ) -> None:
        """Finish the chunks; ``times`` (started, claimed, scored) of their round feed the log and metrics."""
        self.lease_keeper.release()
        done = finish_chunks(conn, scored, self.identity)
        self.chunks_done += report_round(scored, done, times)
        if done:
            self._next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
        self._in_hand = []
        self._claimed = []

    def _wait(self, conn: psycopg.Connection) -> None:
        """Block until a NOTIFY arrives or the poll interval passes."""
        self._idle = True
        try:
            if self.stopping:
                raise _StopWaiting
            timeout = min(
                self.settings.poll_seconds,
                self.settings.release_expired_seconds,
                self.settings.heartbeat_seconds,
            )
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
        finally:
            self._idle = False
