"""The runner process's loop: claim a round of chunks, score it, commit it, repeat, never waiting.

The queue's statements are in ``core.batches.queue``; the database side of the loop
runs on a thread of its own (``jobrunner.round_pipe``). This module owns the process:
while it scores round N, the pipe commits N - 1 and claims N + 1, unless round N
itself, at the pace measured so far, will take PREFETCH_BELOW_SECONDS or more (a
round held ahead would only be kept from idle runners). Each round is sized to about
ROUND_SECONDS of scoring at the last round's time per chunk, at most CLAIM_CHUNKS;
with nothing to do it waits on LISTEN plus a poll. Only a signal stops it: SIGTERM or
SIGINT commits the chunk in hand and gives back every chunk not started; any other
failure hands the round back and the loop goes on (docs/design.md, "Runners" and
"Guarantees").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import FrameType

from core.batches.queue import ClaimedChunk, RunnerIdentity
from core.settings import Settings
from jobrunner import metrics
from jobrunner.chunk_scoring import score_chunk
from jobrunner.identity import default_runner_name
from jobrunner.lease_keeper import LeaseKeeper
from jobrunner.round_pipe import LOST, Abandoned, Job, Outcome, RoundPipe
from jobrunner.scoring import scorer_function

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
#: A round expected (from its texts' length, at the last round's seconds per character: what a
#: VADER scorer's time follows, whatever the batch) to score faster than this is claimed ahead of.
PREFETCH_BELOW_SECONDS = 1.0
#: How long a round should take to score: the round size (chunks per claim, at most CLAIM_CHUNKS)
#: follows from the last round's time per chunk, so short texts travel in large rounds and long
#: ones in single chunks. A claim and a commit cost PostgreSQL about a millisecond each whatever
#: the round's size; half a second of scoring makes that a fraction of a microsecond per row, and
#: keeps what a killed runner loses, and how long a new batch waits for its turn, small.
ROUND_SECONDS = 0.5
#: A round still being scored after this long hands its unstarted chunks back: its size came from
#: another batch's texts (a round is sized before the claim says which batch it gets).
OVERLONG_ROUND_SECONDS = 4 * ROUND_SECONDS
#: How long the scoring thread may keep the GIL from the pipe's thread (Python's default is 5 ms).
SWITCH_INTERVAL_SECONDS = 0.0005


class _StopWaiting(Exception):
    """Raised by the signal handler to leave an idle wait at once."""


class Runner:
    """One runner process: the loop plus its signal handling and reconnection."""

    def __init__(self, settings: Settings) -> None:
        from core.connections import conninfo

        self.settings = settings
        self.name = settings.runner_name or default_runner_name()
        self.identity = RunnerIdentity(self.name, socket.gethostname(), os.getpid(), settings.scorer)
        self.stopping = False
        self._idle = False
        self.lease_keeper = LeaseKeeper(
            conninfo(settings, "runner"), settings.lease_seconds, settings.stuck_chunk_seconds
        )
        self.pipe = RoundPipe(settings, self.identity, self.lease_keeper)
        # Where the loop's time went, for the line it logs when it stops.
        self.spent = {"scoring": 0.0, "waiting": 0.0, "idle": 0.0}

    @property
    def chunks_done(self) -> int:
        return self.pipe.chunks_done

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
        # The pipe's thread needs the GIL for moments at a time between round trips; at the default
        # 5 ms switch interval it would wait that long behind the scoring thread each time.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self.lease_keeper.start()
        self.pipe.start()
        failures = 0
        while not self.stopping:
            try:
                self._work()
            except (_StopWaiting, Abandoned):
                break
            except Exception:  # a bug: what is in hand is lost (its leases expire), the runner goes on
                log.exception("the loop failed; starting over")
                self.lease_keeper.release()  # so they do expire: nobody will finish them now
                try:
                    failures = self._back_off(failures)
                except _StopWaiting:
                    break
        self.pipe.stop()
        self.lease_keeper.stop()
        whole = sum(self.spent.values()) or 1.0
        shares = ", ".join(f"{name} {seconds / whole:.1%}" for name, seconds in self.spent.items())
        log.info(
            "runner %s stopped after %d chunk(s); its loop's time: %s",
            self.name,
            self.chunks_done,
            shares,
            extra={f"{name}_s": round(seconds, 3) for name, seconds in self.spent.items()},
        )
        return 0

    def _sleep(self, seconds: float) -> None:
        self._idle = True
        try:
            time.sleep(seconds)
        finally:
            self._idle = False

    def _exchange(self, job: Job) -> Outcome:
        """Run a job and wait for it (a stopping runner gives up on one stuck in an outage)."""
        return self._result(self.pipe.submit(job))

    def _result(self, future: Future[Outcome]) -> Outcome:
        started = time.perf_counter()
        try:
            while True:
                try:
                    return future.result(timeout=0.5)
                except FutureTimeout:
                    if self.stopping and self.pipe.troubled:
                        self.pipe.abandon()
        finally:
            self.spent["waiting"] += time.perf_counter() - started

    def _work(self) -> None:
        """Rounds until asked to stop. ``job`` carries what the next exchange with the database
        must do for the rounds already handled: commit, hand back, give back."""
        job, round_, failures = Job(), [], 0
        per_char: float | None = None  # the last round's scoring seconds per character of text
        job.claim_limit = 1  # until a round has been timed
        waited = time.perf_counter()  # since when the loop waits for the round it scores next
        while True:
            if not round_:
                # Nothing to score: commit what is in hand, then claim and wait for the answer.
                job.claim = not self.stopping
                waited = time.perf_counter()
                outcome = self._exchange(job)
                job = Job(claim_limit=job.claim_limit)
                if self.stopping:
                    job.give_back = outcome.claimed
                    if job.give_back:
                        self._exchange(job)
                    return
                if outcome.error is not None:
                    failures = self._back_off(failures)
                    continue
                failures, round_ = 0, outcome.claimed
                if not round_:
                    self._wait()
                continue
            job.claim = (
                per_char is not None
                and _characters(round_) * per_char < PREFETCH_BELOW_SECONDS
                and not self.stopping
            )
            ahead = self.pipe.submit(job)
            started = time.perf_counter()
            try:
                job, taken_up = self._score_round(round_, waited)
            except Exception:  # a bug, not a scorer's exception: hand the round back and go on
                log.exception("a round failed; its chunks go back to the queue")
                self.pipe.shelf.take()  # handed back with the rest, not committed with the next round
                job = Job(retry=[(c, "the round failed in the runner (see its log)", 0.0) for c in round_])
                taken_up = round_
            last_seconds = time.perf_counter() - started
            # The pace of the chunks the scorer took up (committed early or not, failed or not):
            # not of those handed back unscored, which took no time.
            per_char = last_seconds / max(_characters(taken_up), 1)
            self.spent["scoring"] += last_seconds
            job.claim_limit = self._round_size(last_seconds, len(taken_up))
            waited = time.perf_counter()
            outcome = self._result(ahead)
            round_ = outcome.claimed
            if self.stopping:
                job.give_back += round_
                round_ = []
            if outcome.error is not None:
                job.give_back += round_
                round_ = []
                self._exchange(job)  # commit this round before backing off
                job = Job(claim_limit=job.claim_limit)
                failures = self._back_off(failures)
            else:
                failures = 0

    def _round_size(self, seconds: float, chunks: int) -> int:
        """Chunks for the next claim: about ROUND_SECONDS of scoring at the pace of the round just
        scored, at least 1 and at most CLAIM_CHUNKS."""
        per_chunk = seconds / max(chunks, 1)
        wanted = int(ROUND_SECONDS / per_chunk) if per_chunk > 0 else self.settings.claim_chunks
        return max(1, min(self.settings.claim_chunks, wanted))

    def _back_off(self, failures: int) -> int:
        failures += 1
        backoff = min(self.settings.retry_backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
        log.warning("next round in %.1fs", backoff)
        self._sleep(backoff)
        return failures

    def _score_round(self, chunks: list[ClaimedChunk], waited: float) -> tuple[Job, list[ClaimedChunk]]:
        """Score a round: the job that commits it (and hands back what failed or was not started),
        and the chunks the scorer took up."""
        in_hand = time.perf_counter()
        job = Job()
        taken_up: list[ClaimedChunk] = []
        for index, chunk in enumerate(chunks):
            if self.stopping:
                # Asked to stop: commit what is scored, hand the rest straight back.
                job.give_back = chunks[index:]
                break
            if index and time.perf_counter() - in_hand > OVERLONG_ROUND_SECONDS:
                # Sized on another batch's texts: commit what is scored and hand the rest back
                # (uncounted) for idle runners, rather than hold them for many seconds more.
                job.give_back = chunks[index:]
                break
            self.lease_keeper.scoring(chunk)
            taken_up.append(chunk)
            try:
                self.pipe.shelf.put(score_chunk(chunk, self.settings))
            except Exception as exc:
                job.retry.append(self._scoring_failed(chunk, exc))
        job.commit = self.pipe.shelf.take()  # what the pipe has not committed early
        job.times = (waited, in_hand, time.perf_counter())
        return job, taken_up

    def _scoring_failed(self, chunk: ClaimedChunk, exc: Exception) -> tuple[ClaimedChunk, str, float]:
        """A chunk whose scoring raised goes back to the queue after a backoff (the attempt counts)."""
        backoff = min(self.settings.retry_backoff_seconds * 2 ** (chunk.attempts - 1), MAX_BACKOFF_SECONDS)
        log.warning(
            "chunk %s of batch %s failed on attempt %d (%s); retrying in %.1fs",
            chunk.chunk_id,
            chunk.batch_id,
            chunk.attempts,
            exc,
            backoff,
        )
        metrics.CHUNKS.labels("retried").inc()
        return chunk, f"attempt {chunk.attempts}: {type(exc).__name__}: {exc}", backoff

    def _wait(self) -> None:
        """Block until a NOTIFY arrives or the poll interval passes (nothing in hand meanwhile)."""
        timeout = min(
            self.settings.poll_seconds,
            self.settings.release_expired_seconds,
            self.settings.heartbeat_seconds,
        )
        self._idle = True
        started = time.perf_counter()
        try:
            if self.stopping:
                raise _StopWaiting
            self.pipe.wait_for_work(timeout)
        except LOST as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("database unavailable (%s); retrying in %.1fs", first_line, 1.0)
            time.sleep(1.0)
        finally:
            self._idle = False
            self.spent["idle"] += time.perf_counter() - started


def _characters(chunks: list[ClaimedChunk]) -> int:
    """Characters of text in a round (a C-level sum per chunk: no Python step per row)."""
    return sum(sum(map(len, chunk.texts)) for chunk in chunks)
