"""A reaper turn's time, lock waits included.

Housekeeping runs on a runner's database thread, ahead of its next commit and claim, so a
turn of purging and reaping is given a budget (REAP_BUDGET_SECONDS). Every statement of
the turn waits for a lock at most what is left of it: :meth:`Budget.bound` sets the
session's ``lock_timeout`` to that before each one (the reaper's connection is in
autocommit mode, so each statement is its own transaction and a ``SET LOCAL`` would not
outlive it). A lock not granted in that time ends the turn (:class:`BudgetSpent`); what
is left is done by a later turn. The bound is per lock request: a statement that queues for
several locks in turn may wait up to that long for each, so a turn can pass its budget by a
few such waits at most, never by an unbounded one. DDL (a detach, a drop) waits at most ``cap`` seconds
even when the budget is larger, since its lock request queues every later reader of the
parent behind it; and longer than the budget's rest when an autovacuum worker holds the
partition, which PostgreSQL cancels only for a lock request that waits past deadlock_timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.errors import LockNotAvailable


class BudgetSpent(Exception):
    """The turn's time is up: a lock was not granted within what was left of it, or nothing was."""

    #: Rows the turn's reaping had removed by then.
    removed = 0

    @property
    def lock_wait(self) -> bool:
        """Whether a lock wait ended the turn (rather than the clock, between two statements)."""
        return isinstance(self.__cause__, LockNotAvailable)


class Budget:
    """``seconds`` from now (``math.inf``: no bound), for the statements of one turn on one connection."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.lock_timeout_ms = 0  # what the last statement was given (0: no bound)
        self.binding = False  # whether that was the budget's rest, rather than a cap

    def left(self) -> float:
        """Seconds left (may be negative; ``math.inf`` for an unbounded budget)."""
        return self.deadline - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0

    def bound(self, conn: psycopg.Connection, cap: float = math.inf, at_least: float = 0.0) -> None:
        """Before one statement: ``lock_timeout`` = what is left of the budget, at most ``cap``
        seconds, for the session; at least ``at_least`` seconds, past the budget if need be (a
        wait that must outlast PostgreSQL's own, see partitions). :class:`BudgetSpent` when less
        than a millisecond is left."""
        left = self.left()
        wait = max(min(left, cap), at_least)
        ms = 0 if math.isinf(wait) else math.floor(wait * 1000)  # never past the budget but by at_least
        if ms < 1 and not math.isinf(wait):
            raise BudgetSpent("no time left")
        self.binding = at_least < left <= cap
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (str(ms),))
        self.lock_timeout_ms = ms

    def ended_by(self, exc: LockNotAvailable) -> BudgetSpent | None:
        """The turn's end, when ``exc`` came from a wait the budget's rest bounded; None when a
        cap bounded it (the caller skips that work and goes on)."""
        if not self.binding:
            return None
        message = f"a lock not granted within the {self.lock_timeout_ms} ms left ({exc.diag.message_primary})"
        return BudgetSpent(message)

    @contextmanager
    def applied(self, conn: psycopg.Connection) -> Iterator[Budget]:
        """The block's statements under this budget; the session's lock_timeout as it was after.
        A :class:`LockNotAvailable` the budget bounded leaves it as :class:`BudgetSpent`."""
        saved = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
        try:
            yield self
        except LockNotAvailable as exc:
            spent = self.ended_by(exc)
            if spent is None:
                raise
            raise spent from exc
        finally:
            if not conn.broken:
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (saved,))
