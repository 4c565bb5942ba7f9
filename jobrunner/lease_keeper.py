"""Keep a runner's leases alive while it holds them: a timer on its own connection.

A runner holds up to three rounds at once (one committing, one being scored, one
claimed ahead; ``jobrunner.round_pipe``), and a chunk may take longer to score than
LEASE_SECONDS. So this thread renews every chunk held, by claim token, every
LEASE_SECONDS / 3 until it is committed or handed back. Its own connection keeps a
renewal from waiting behind the runner's statements, and the renewal runs outside the
keeper's lock, so a renewal stuck on a dead connection never holds up a commit (a
renewal that reaches a chunk already committed changes nothing). A chunk is renewed for
at most STUCK_CHUNK_SECONDS counted from when the scorer took it up (from its claim until
then): a runner stuck in a scorer loses its chunks like a dead one, while chunks that are
merely slow, or waited their turn behind slow ones, keep theirs (docs/design.md, "Long
rounds").
A renewal refused for a full disk keeps the connection (a new session may need to write
too) and is logged once per period (``core.disk_full``).
"""

from __future__ import annotations

import logging
import math
import threading

import psycopg

from core.batches.queue import ClaimedChunk, renew_leases
from core.disk_full import OncePer, is_disk_full

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the leases of the chunks the runner holds, from a daemon thread."""

    def __init__(self, conninfo: str, lease_seconds: float, stuck_seconds: float = 600.0) -> None:
        self.conninfo = conninfo
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        #: Renewals of one chunk before the keeper gives up on it: STUCK_CHUNK_SECONDS' worth.
        self.max_renewals = max(1, math.ceil(stuck_seconds / self.interval))
        self._held: dict[int, tuple[ClaimedChunk, int]] = {}  # chunk id: (chunk, renewals so far)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self.renewed = 0  # leases renewed, for the logs and the tests
        self.disk_full = OncePer(log, "lease renewals")

    def start(self) -> None:
        self._thread.start()

    def hold(self, chunks: list[ClaimedChunk]) -> None:
        """Renew these chunks' leases from now on (with those already held), until :meth:`release`."""
        with self._lock:
            for chunk in chunks:
                self._held[chunk.chunk_id] = (chunk, 0)

    def scoring(self, chunk: ClaimedChunk) -> None:
        """The scorer takes this chunk up now: its renewals are counted from here."""
        with self._lock:
            if chunk.chunk_id in self._held:
                self._held[chunk.chunk_id] = (chunk, 0)

    def release(self, chunks: list[ClaimedChunk] | None = None) -> None:
        """Stop renewing these chunks (all, without an argument)."""
        with self._lock:
            if chunks is None:
                self._held.clear()
            for chunk in chunks or ():
                self._held.pop(chunk.chunk_id, None)

    def held(self) -> list[ClaimedChunk]:
        with self._lock:
            return [chunk for chunk, _ in self._held.values()]

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            with self._lock:
                due = []
                for chunk_id, (chunk, renewals) in list(self._held.items()):
                    self._held[chunk_id] = (chunk, renewals + 1)
                    if renewals < self.max_renewals:
                        due.append(chunk)
                    elif renewals == self.max_renewals:
                        log.error(
                            "chunk %s held for %d renewals since its scoring began: no longer renewed",
                            chunk_id,
                            self.max_renewals,
                        )
            if due:
                self._renew(due)
        if self._conn is not None:
            self._conn.close()

    def _renew(self, held: list[ClaimedChunk]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            renewed = renew_leases(self._conn, held, self.lease_seconds)
        except psycopg.Error as exc:
            if is_disk_full(exc) and self._conn is not None and not self._conn.broken:
                self.disk_full.refused(exc, "leases expire unless a later renewal goes through")
                return
            log.warning("could not renew leases (%s); they expire unless the next try works", exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return
        self.disk_full.cleared()
        self.renewed += len(renewed)
        with self._lock:  # chunks committed or handed back meanwhile were not lost
            lost = [c.chunk_id for c in held if c.chunk_id not in renewed and c.chunk_id in self._held]
        if lost:
            log.warning("chunks %s: lease no longer ours, not renewed", lost)
