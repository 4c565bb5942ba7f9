"""The runner's side of the database, on a thread of its own, so the loop keeps scoring while it waits.

It owns the runner's main connection (the lease keeper has the other): claims,
commits, hand-backs, heartbeats, housekeeping and the idle LISTEN. The loop hands it
one :class:`Job` per round; one job runs at a time, its steps in one order:
housekeeping, failures handed back, unscored chunks given back, the commit, the
claim. Each chunk is shelved here as soon as it is scored; a round's job commits what
its round left on the shelf, and between jobs the thread commits chunks that have
waited EARLY_COMMIT_SECONDS there, so a slow chunk never holds the scored ones of its
round back. A commit and the next claim go out as one pipeline (``finish_and_claim``), so
a runner with fast rounds never waits for a round trip; if that pair fails, the
round is committed alone and the claim waits for the next job. Every step is tried
again after a lost connection (or a read-only server: after a failover the new
connection finds the new primary) or a full disk (``jobrunner.runner_session``), and
guarded, so a commit after a reconnect writes only chunks still ours; while the disk is
full a commit or a claim waits (the scored round stays in hand), and housekeeping and
hand-backs are skipped for the turn.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import psycopg

from core.batches.queue import (
    ClaimedChunk,
    RunnerIdentity,
    ScoredChunk,
    claim_chunks,
    finish_and_claim,
    finish_chunks,
    give_back,
    retry_later,
)
from core.disk_full import is_disk_full
from core.queries import q
from core.settings import Settings
from jobrunner.housekeeping import housekeep
from jobrunner.lease_keeper import LeaseKeeper
from jobrunner.round_report import report_round
from jobrunner.runner_session import LOST, MAX_RETRY_SECONDS, Abandoned, RunnerSession
from jobrunner.shelf import Shelf

log = logging.getLogger("jobrunner.runner")

__all__ = ["LOST", "Abandoned", "Job", "Outcome", "RoundPipe"]

#: A scored chunk left on the shelf this long, while its round still scores, is committed alone.
#: Rounds are sized to about half a second, so only a round slowed by one of its chunks gets here.
EARLY_COMMIT_SECONDS = 2.0


@dataclass
class Job:
    """What one round asks of the database, in the order it is done."""

    commit: list[ScoredChunk] = field(default_factory=list)  # scored chunks of one batch
    times: tuple[float, float, float] | None = None  # the committed round's (waited, in hand, scored)
    retry: list[tuple[ClaimedChunk, str, float]] = field(default_factory=list)  # (chunk, error, backoff)
    give_back: list[ClaimedChunk] = field(default_factory=list)  # claimed, never scored
    claim: bool = False
    claim_limit: int = 1  # chunks the claim asks for


@dataclass
class Outcome:
    claimed: list[ClaimedChunk] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    error: Exception | None = None  # the commit or the claim raised (not a lost connection)


class RoundPipe:
    """Runs jobs one at a time on the runner's connection, from a daemon thread."""

    def __init__(self, settings: Settings, identity: RunnerIdentity, keeper: LeaseKeeper) -> None:
        self.settings = settings
        self.identity = identity
        self.keeper = keeper
        self.chunks_done = 0
        self.session = RunnerSession(settings)
        self._lock = threading.Lock()  # the connection: the thread's job, or the loop's idle wait
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Outcome]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="round-pipe", daemon=True)
        self._next_housekeeping = 0.0
        self._next_heartbeat = 0.0
        self.shelf = Shelf()  # the round's scored chunks: the loop puts, it or this thread takes

    @property
    def troubled(self) -> bool:
        """Retrying a step right now, after a lost connection or a full disk."""
        return self.session.troubled

    # -- the loop's side ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._jobs.put((job, future))
        return future

    def abandon(self) -> None:
        """Stop retrying the job in flight (its leases expire; nothing is lost)."""
        self.session.abandoned.set()

    def wait_for_work(self, timeout: float) -> None:
        """Block until a NOTIFY arrives or ``timeout`` passes; only while no job is in flight."""
        with self._lock:
            conn = self.session.connection()
            try:
                for _ in conn.notifies(timeout=timeout, stop_after=1):
                    pass
            except LOST:
                self.session.drop()
                raise

    def stop(self, leave: bool = True) -> None:
        """Finish the job in flight, then end the thread; ``leave`` removes the runners entry."""
        self._jobs.put(None)
        self._thread.join(timeout=30)
        with self._lock:
            conn = self.session.conn
            if leave and conn is not None and not conn.closed:
                with contextlib.suppress(psycopg.Error):  # else the entry expires by itself
                    conn.execute(q("runners_remove"), {"name": self.identity.name})
            self.session.drop()

    # -- the thread's side -------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                item = self._jobs.get(timeout=EARLY_COMMIT_SECONDS / 4)
            except queue.Empty:
                self._commit_waiting()
                continue
            if item is None:
                break
            job, future = item
            try:
                with self._lock:
                    future.set_result(self._run(job))
            except BaseException as exc:  # handed to the loop, which decides
                future.set_exception(exc)

    def _commit_waiting(self) -> None:
        """Commit the shelf's chunks if the oldest has waited EARLY_COMMIT_SECONDS for its round."""
        scored = self.shelf.take(waited=EARLY_COMMIT_SECONDS)
        if not scored:
            return
        log.info("committing %d scored chunk(s) while the rest of their round is scored", len(scored))
        try:
            with self._lock:
                self._commit(scored, None, False, 1)
        except Abandoned:  # stopping during an outage: their leases expire, nothing is lost
            pass
        except Exception as exc:
            with self._lock:
                self._failed_round(scored, exc)

    def _run(self, job: Job) -> Outcome:
        outcome = Outcome()
        self._housekeeping()
        for chunk, error, backoff in job.retry:
            self.keeper.release([chunk])
            self.session.quietly(lambda conn, c=chunk, e=error, b=backoff: retry_later(conn, c, e, b))
        if job.give_back:
            self.keeper.release(job.give_back)
            returned = self.session.quietly(lambda conn: give_back(conn, job.give_back)) or 0
            log.info("%d claimed chunk(s) given back unscored", returned)
        lease, limit = self.settings.lease_seconds, job.claim_limit
        if job.commit:
            try:
                outcome.done, outcome.claimed = self._commit(job.commit, job.times, job.claim, limit)
            except Abandoned:
                raise
            except Exception as exc:  # the round goes back to the queue
                self._failed_round(job.commit, exc)
                outcome.error = exc
                return outcome
        elif job.claim:
            try:
                outcome.claimed = self.session.retrying(
                    lambda conn: claim_chunks(conn, self.identity.name, lease, limit)
                )
            except Abandoned:
                raise
            except Exception as exc:  # nothing claimed; the loop backs off
                log.exception("claiming failed")
                outcome.error = exc
        self.keeper.hold(outcome.claimed)
        return outcome

    def _commit(
        self, scored: list[ScoredChunk], times: tuple[float, float, float] | None, claim: bool, limit: int
    ) -> tuple[set[int], list[ClaimedChunk]]:
        """Commit a round, and with ``claim`` claim the next in the same pipeline (not while the
        disk is full: the round alone waits for room, and the claim waits for the next turn)."""
        lease = self.settings.lease_seconds
        done, claimed = None, []
        if claim and not self.session.disk_full.full:
            try:
                done, claimed = self.session.retrying(
                    lambda conn: finish_and_claim(conn, scored, self.identity, lease, limit),
                    wait_for_room=False,
                )
            except Abandoned:
                raise
            except Exception as exc:  # neither committed: the round alone, the claim on the next turn
                if is_disk_full(exc):
                    self.session.disk_full.refused(
                        exc, f"the round waits, tried again every {MAX_RETRY_SECONDS:g} s at most"
                    )
                else:
                    log.warning("committing and claiming together failed; committing alone", exc_info=True)
        if done is None:
            done = self.session.retrying(lambda conn: finish_chunks(conn, scored, self.identity))
            self.session.disk_full.cleared()  # the round's results were written: there is room
        # Renewed until the commit has gone through: a commit that waits out a full disk or a
        # failover keeps its chunks' leases meanwhile (a renewal that reaches a chunk just
        # committed changes nothing).
        self.keeper.release([item.chunk for item in scored])
        self.chunks_done += report_round(scored, done, times)
        if done:
            self._next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
        return done, claimed

    def _failed_round(self, scored: list[ScoredChunk], exc: Exception) -> None:
        log.exception("a round failed; its chunks go back to the queue", exc_info=exc)
        self.keeper.release([item.chunk for item in scored])
        backoff = self.settings.retry_backoff_seconds
        reason = "the round failed in the runner (see its log)"
        for item in scored:
            self.session.quietly(lambda conn, c=item.chunk: retry_later(conn, c, reason, backoff))

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            params = {"name": self.identity.name, "host": self.identity.host, "pid": self.identity.pid}
            params.update(scorer=self.identity.scorer, chunks=0, rows=0)
            self.session.quietly(lambda conn: conn.execute(q("runners_heartbeat"), params))
            self._next_heartbeat = now + self.settings.heartbeat_seconds
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self.settings.release_expired_seconds
            self.session.quietly(lambda conn: housekeep(conn, self.settings))
