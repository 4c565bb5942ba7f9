"""Finished batches' result pages and downloads read from a hot standby (READ_DATABASE_URL).

The primary stays the truth for whether a batch exists, whose it is and its state: each request
reads the batch there first, so a batch deleted a moment ago is a 404 at once. Its results come
from the replica only once the replica shows the batch in the same final state, with as many
commits (``commit_seq``: a cancelled batch's chunks in hand still commit): they are written before
or with the statement that counts them, and a standby replays commits in order, so it then holds
every row the primary showed. Until then (replication lag), and while the
replica fails or is busy, reads go to the primary: a client never sees a finished batch with rows
missing. A standby wants ``hot_standby_feedback = on`` and a ``max_standby_streaming_delay`` as
long as an export may take, or replay cancels the export (docs/operations.md, "Read replicas").
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from flask import Flask, current_app
from psycopg.errors import QueryCanceled
from psycopg_pool import ConnectionPool, PoolTimeout

from core import batches
from core.batches import Batch
from core.clients import Caller
from core.connections import conninfo, milliseconds
from core.errors import NotFound, NotReady
from core.settings import Settings
from webapp.db import WebPool, caller, get_pool

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a request waits for a replica connection before it reads from the primary instead.
CONNECT_SECONDS = 2.0
#: The statement time the check that the replica shows the batch finished may take.
CHECK_SECONDS = 2.0
#: How long reads stay on the primary after the replica failed.
RETRY_SECONDS = 30.0

_FAILED = (psycopg.Error, PoolTimeout)


class Replica:
    """The replica's pool, and whether it answered lately."""

    def __init__(self, pool: WebPool) -> None:
        self.pool = pool
        self._down_until = 0.0
        self._in_use = 0  # connections handed out by checked()
        self._lock = threading.Lock()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _count(self, change: int) -> None:
        with self._lock:
            self._in_use += change

    def failed(self, exc: BaseException) -> None:
        """The replica could not serve a read: leave it alone for RETRY_SECONDS, unless it was only
        busy (a pool timeout while every connection is in use)."""
        if isinstance(exc, PoolTimeout) and self._in_use >= self.pool.max_size:
            log.info("replica pool busy: this read goes to the primary")
            return
        with self._lock:
            if self.available():
                log.warning("replica failed (%s): reading from the primary for %g s", exc, RETRY_SECONDS)
            self._down_until = time.monotonic() + RETRY_SECONDS

    @contextmanager
    def checked(
        self, who: Caller, batch: Batch, *, bulk: bool = False
    ) -> Iterator[psycopg.Connection | None]:
        """A replica connection, as ``who``, whose transaction shows ``batch`` finished as the primary
        does, with the usual statement timeout again; None (and no connection held) when the
        replica cannot serve it. Failures after the connection was handed over propagate.

        The check runs on the very connection that then reads: a READ_DATABASE_URL may lead to
        several standbys, or to another one after a restart."""
        serving = False
        try:
            check_ms = milliseconds(CHECK_SECONDS)
            with self.pool.caller_connection(who, bulk=bulk, timeout_ms=check_ms) as conn:
                self._count(1)
                try:
                    # A lock that replay holds (DDL, or a vacuum's truncation, on batches or
                    # batch_results) is waited for CHECK_SECONDS at most, for the whole transaction:
                    # past it, LockNotAvailable, and the read goes to the primary.
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(check_ms),))
                    if _shows(conn, batch):
                        # The batch's results partition is locked now (an export's COPY then
                        # waits for nothing), and the read gets its usual statement timeout.
                        params = (str(self.pool.timeout_ms(bulk)), batch.id)
                        conn.execute(_READY, params)
                        serving = True
                        yield conn
                        return
                finally:
                    self._count(-1)
        except _FAILED as exc:
            if serving:
                raise
            self.failed(exc)
        yield None


_READY = (
    "SELECT set_config('statement_timeout', %s, true),"
    " EXISTS (SELECT 1 FROM batch_results WHERE batch_id = %s)"
)


def _shows(conn: psycopg.Connection, batch: Batch) -> bool:
    """Whether the replica (``conn``) shows ``batch`` in the final state the primary does, with
    every commit the primary showed (a cancelled batch's chunks in hand commit after the cancel)."""
    try:
        shown = batches.get(conn, batch.public_id)
        return shown.status == batch.status and shown.commit_seq >= batch.commit_seq
    except NotFound:  # not replayed yet
        return False


def init_app(app: Flask, settings: Settings) -> None:
    """Open the replica's pool when READ_DATABASE_URL is set (closed, as the primary's, until the fork)."""
    if not settings.read_database_url:
        return
    pool = WebPool(
        conninfo(settings, "web", settings.read_database_url),
        statement_timeout=settings.statement_timeout,
        bulk_statement_timeout=settings.bulk_statement_timeout,
        min_size=1,
        # Pages and MAX_EXPORTS downloads at once, as the primary's pool serves them.
        max_size=settings.db_pool_size + settings.max_exports,
        open=False,
        timeout=CONNECT_SECONDS,
        check=ConnectionPool.check_connection,
        name="webapp-replica",
    )
    pool.open(wait=False)
    app.extensions["db_replica"] = Replica(pool)
    atexit.register(pool.close)


def _eligible(replica: Replica | None, batch: Batch, writes: bool = False) -> Replica | None:
    """``replica``, if it is set up, answered lately, and could hold all of ``batch``'s results."""
    if replica is None or writes or not batch.finished or not replica.available():
        return None
    return replica


def read_results(
    batch: Batch,
    primary: psycopg.Connection,
    read: Callable[[psycopg.Connection], T],
    *,
    writes: bool = False,
) -> T:
    """``read`` (a page of ``batch``'s results or set-aside rows, as read on ``primary``, the
    request's own connection) on the replica once it has replayed the batch's end, else, or if it
    fails there, on ``primary``. ``writes``: the read may write (a list's checkpoints), so it needs
    the primary."""
    replica = _eligible(current_app.extensions.get("db_replica"), batch, writes)
    if replica is not None:
        try:
            with replica.checked(caller(), batch) as conn:
                if conn is not None:
                    return read(conn)
        except QueryCanceled:  # the read ran past STATEMENT_TIMEOUT: it would on the primary too (503)
            raise
        except NotReady:
            # The replica has not replayed what the primary has (a batch's sort keys, written a
            # moment ago): the primary's turn, and the replica is not down.
            pass
        except _FAILED as exc:  # the read itself failed there (a recovery conflict): the primary's turn
            replica.failed(exc)
    return read(primary)


@dataclass(frozen=True)
class ExportSource:
    """Where a download of results reads from. Made in the view, used while the response streams
    (outside the app context): the replica, checked on the connection that streams, else the
    primary. A download that fails while it streams from the replica ends, as one from the primary
    would: its first bytes are already sent."""

    primary: WebPool
    replica: Replica | None
    who: Caller

    @contextmanager
    def connection(self, batch: Batch, bulk: bool = True) -> Iterator[psycopg.Connection]:
        """For one read or one whole download; ``bulk``: under BULK_STATEMENT_TIMEOUT."""
        replica = _eligible(self.replica, batch)
        if replica is not None:
            with replica.checked(self.who, batch, bulk=bulk) as conn:
                if conn is not None:
                    yield conn
                    return
        with self.primary.caller_connection(self.who, bulk=bulk) as conn:
            yield conn


def export_source() -> ExportSource:
    """The current request's ExportSource."""
    return ExportSource(get_pool(), current_app.extensions.get("db_replica"), caller())
