"""A full disk, as the database and our own files report it, and saying so once per period.

PostgreSQL refuses a write that finds no room with SQLSTATE 53100 (``disk_full``: "could not
extend file", "could not write to file ... No space left on device"), and from a few code paths in
another class (58030 ``io_error``, or XX000) whose message carries the C library's "No space left
on device"; our own files (an upload's spool) fail with ``OSError`` ENOSPC, or EDQUOT for a quota.
All of them mean the same to a client and to a runner: nothing was written (the transaction rolled
back), the connection is still good, and trying again helps only once space is freed. So the web
answers ``507`` with ``Retry-After`` (:mod:`webapp.problems`), and runners wait with a backoff,
keeping their connections: a new session may itself need to write (its relation cache file) and
fail while the disk is full.

:class:`OncePer` keeps a process's log readable while it lasts: the first refusal is logged at
once, then one line per period counting the refusals, and one line when a refused write goes
through again. A run with no refusal for a whole period is over even if nothing said so (the steps
refused may not have been tried again), so the next refusal is logged at once.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time

import psycopg

#: SQLSTATE ``disk_full``.
DISK_FULL_SQLSTATE = "53100"
#: What the C library says for ENOSPC, in the messages PostgreSQL raises outside class 53; and the
#: FATAL a new session gets when it cannot write its relation cache file (a short ``fwrite``, no errno
#: in the message: a full disk, or a failing one).
_NO_SPACE = ("no space left on device", "could not write init file")
#: The classes whose errors may carry those messages: I/O errors and internal errors.
_NO_SPACE_CLASSES = ("58", "XX")
#: What a client is told to wait before trying again: freeing space takes an operator.
RETRY_AFTER_SECONDS = 30
#: How often a process logs that the disk is still full.
LOG_PERIOD_SECONDS = 60.0


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write found no room on a disk (the database's, or ours)."""
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate == DISK_FULL_SQLSTATE:
            return True
        if exc.sqlstate is not None and exc.sqlstate[:2] not in _NO_SPACE_CLASSES:
            return False  # a constraint's DETAIL may quote any text, "no space left" included
        message = (exc.diag.message_primary or first_line(exc)).lower()
        return any(words in message for words in _NO_SPACE)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (PostgreSQL's HINT follows on the next)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def public_reason(exc: BaseException) -> str:
    """The refusal's first line without the file names it quotes (the database's files, or our
    spool's), for anyone to read; the server's log has them."""
    return re.sub(r'"[^"]*"' + r"|'[^']*'", "…", first_line(exc))


class OncePer:
    """Logs a run of disk-full refusals on ``logger``: the first at once, then at most one line per
    ``period`` with how many came meanwhile, and one when a refused write goes through
    (:meth:`cleared`). Runs that come and go faster than that share the period's one line."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        period: float = LOG_PERIOD_SECONDS,
        quiet_after: float | None = None,
    ) -> None:
        self.logger = logger
        self.what = what  # what was refused, for the log: "the runner's writes", "lease renewals"
        self.period = period
        # A run with no refusal for this long is over (by default, a period).
        self.quiet_after = period if quiet_after is None else quiet_after
        self._lock = threading.Lock()
        self._since: float | None = None  # when the run of refusals began
        self._last = 0.0  # the run's last refusal
        self._refused = 0  # refusals in the run
        self._unlogged = 0  # refusals since the last line
        self._announced = False  # a line said this run began
        self._next_line = 0.0  # no refusal line before this

    @property
    def full(self) -> bool:
        """Whether a run of refusals is going on (one refused within the last period)."""
        return self._since is not None and time.monotonic() - self._last <= self.quiet_after

    def refused(self, exc: BaseException, then: str) -> None:
        """One more refusal; ``then`` says what happens next ("tried again every 5 s at most")."""
        now = time.monotonic()
        with self._lock:
            if self._since is None or now - self._last > self.quiet_after:
                self._since, self._refused, self._unlogged, self._announced = now, 0, 0, False
            self._last = now
            self._refused += 1
            self._unlogged += 1
            if now < self._next_line:
                return
            self._next_line = now + self.period
            count, self._unlogged = self._unlogged, 0
            first, self._announced = not self._announced, True
        if first:
            self.logger.warning(
                "the database's disk is full (%s): %s refused, %s; logged again every %.0f s while it lasts",
                first_line(exc),
                self.what,
                then,
                self.period,
                extra={"disk_full": True},
            )
        else:
            self.logger.warning(
                "the database's disk is still full (%s): %s refused %d time(s) since the last line, %s",
                first_line(exc),
                self.what,
                count,
                then,
                extra={"disk_full": True, "refused": count},
            )

    def cleared(self) -> None:
        """A write refused before went through: the run is over (said so if its start was)."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            seconds, count, announced = time.monotonic() - self._since, self._refused, self._announced
            self._since = None
        if announced:
            self.logger.warning(
                "the database has room again: %s went through after %d refusal(s) over %.1f s",
                self.what,
                count,
                seconds,
                extra={"disk_full": False, "refused": count, "full_s": round(seconds, 3)},
            )
