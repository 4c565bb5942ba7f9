"""The runner's main connection, and how a step on it is tried again.

One session per runner process, used by its pipe's thread (``jobrunner.round_pipe``) and by the
loop's idle LISTEN. A lost connection (or one whose server turned read-only after a failover) is
dropped and opened again, and the step run again with backoff, 0.5 s doubling to
MAX_RETRY_SECONDS, until it works or the loop abandons it. A write refused for a full disk
(``core.disk_full``) is tried again the same way on the same connection (a new session may need
to write too), and logged once per period.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from core.batches.queue import NOTIFY_CHANNEL, configure_session
from core.connections import SESSION_LOST, conninfo
from core.disk_full import OncePer, first_line, is_disk_full
from core.migrations import migrate
from core.settings import Settings

log = logging.getLogger("jobrunner.runner")

T = TypeVar("T")
LOST = SESSION_LOST
#: The longest wait between two tries of a step, after a lost connection or a full disk.
MAX_RETRY_SECONDS = 5.0


class Abandoned(Exception):
    """The loop gave up on the job in flight (it stops while the database is unreachable)."""


class RunnerSession:
    """The runner's main connection, opened (and migrated, if asked) on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conninfo = conninfo(settings, "runner")
        self._migrated = not settings.migrate_on_start
        self.conn: psycopg.Connection | None = None
        self.abandoned = threading.Event()
        self.troubled = False  # retrying after a lost connection or a full disk right now
        self.disk_full = OncePer(log, "the runner's writes")

    def quietly(self, step: Callable[[psycopg.Connection], T]) -> T | None:
        """A step whose failure (other than a lost connection) is logged and skipped; a full disk
        skips it too (the step is housekeeping, a heartbeat or a hand-back: a later turn redoes it,
        or the leases concerned expire)."""
        try:
            return self.retrying(step, wait_for_room=False)
        except Abandoned:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                self.disk_full.refused(exc, "housekeeping and hand-backs skipped until there is room")
            else:
                log.exception("a queue statement failed; going on")
            return None

    def retrying(self, step: Callable[[psycopg.Connection], T], wait_for_room: bool = True) -> T:
        """Run ``step`` on the connection; reconnect and run it again after a lost connection, and
        (``wait_for_room``) run it again on the same connection while the disk is full."""
        backoff, refused = 0.5, False
        while True:
            try:
                result = step(self.connection())
            except Exception as exc:
                if is_disk_full(exc):
                    if not wait_for_room:
                        raise
                    refused = True
                    self.disk_full.refused(exc, f"tried again every {MAX_RETRY_SECONDS:g} s at most")
                    if self.conn is not None and self.conn.broken:
                        self.drop()
                elif isinstance(exc, LOST):
                    self.drop()
                    log.warning("database unavailable (%s); retrying in %.1fs", first_line(exc), backoff)
                else:
                    raise
                self.troubled = True
                if self.abandoned.wait(backoff):
                    raise Abandoned from exc
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
            else:
                self.troubled = False
                if refused:
                    self.disk_full.cleared()
                return result

    def connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            if not self._migrated:
                migrate(self.settings.database_url)
                self._migrated = True
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
            configure_session(conn)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.conn = conn
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
