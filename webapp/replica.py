"""Reads from a streaming replica (READ_DATABASE_URL): result pages and exports of finished batches.

The heavy reads of the service are a finished batch's results: pages, and the
``results.csv``/``results.ndjson`` downloads that read every row. With
READ_DATABASE_URL set (a hot standby of DATABASE_URL's database, e.g. made
with ``pg_basebackup -R``), they run there, and the primary keeps its
CPU and I/O for uploads and runners. Everything else reads from the primary.

The primary stays the truth for whether a batch exists, whose it is and what
state it is in: each request first reads the batch there (one index lookup),
so a batch deleted or purged a moment ago is a 404 at once, whatever the
replica has replayed. Its results are read from the replica only once the
replica shows the batch in the same final state. A batch's results are
written before the statement that finishes it commits, and a standby
replays commits in order, so from then on the replica holds every row of it
and they no longer change. Until then (replication lag), reads fall back to
the primary: a client never sees a finished batch with rows missing.

A page number in a list that is not numbered densely (``sentiment=`` or
``order=`` with ``page=``) may write the list's checkpoints
(core.batches.ordering), which a standby cannot: those requests read from the
primary. Cursors in those lists read from the replica.

When the replica cannot be reached (no connection within
REPLICA_CONNECT_SECONDS), reads go to the primary for the next
REPLICA_RETRY_SECONDS, with a warning in the log; an error in the middle of a
read is the usual 503 (webapp.problems). Queries on a standby can be
cancelled when they conflict with what it replays (a partition dropped on the
primary while an export reads its parent): run it with
``hot_standby_feedback = on`` and a ``max_standby_streaming_delay`` as long as
an export may take (README, "The path past one PostgreSQL").
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool, PoolTimeout

from core import batches
from core.batches import Batch
from core.connections import conninfo
from core.errors import NotFound
from core.settings import Settings
from webapp.db import WebPool, caller, get_pool

log = logging.getLogger(__name__)

#: How long a request waits for a replica connection before it reads from the primary instead.
REPLICA_CONNECT_SECONDS = 2.0
#: How long reads stay on the primary after the replica could not be reached.
REPLICA_RETRY_SECONDS = 30.0


class Replica:
    """The replica's pool, and whether it answered lately."""

    def __init__(self, pool: WebPool) -> None:
        self.pool = pool
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self, exc: BaseException) -> None:
        with self._lock:
            if self.available():
                log.warning(
                    "replica unreachable (%s): reading from the primary for %g s", exc, REPLICA_RETRY_SECONDS
                )
            self._down_until = time.monotonic() + REPLICA_RETRY_SECONDS


def init_app(app: Flask, settings: Settings) -> None:
    """Open the replica's pool when READ_DATABASE_URL is set (closed, as the primary's, until the fork)."""
    if not settings.read_database_url:
        return
    pool = WebPool(
        conninfo(settings, "web", settings.read_database_url),
        statement_timeout=settings.statement_timeout,
        bulk_statement_timeout=settings.bulk_statement_timeout,
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        timeout=REPLICA_CONNECT_SECONDS,
        check=ConnectionPool.check_connection,
        name="webapp-replica",
    )
    pool.open(wait=False)
    app.extensions["db_replica"] = Replica(pool)
    atexit.register(pool.close)


def _eligible(batch: Batch, writes: bool) -> Replica | None:
    """The replica, if it is set up, answered lately, and could hold all of ``batch``'s results."""
    replica: Replica | None = current_app.extensions.get("db_replica")
    if replica is None or writes or not batch.finished or not replica.available():
        return None
    return replica


def _shows(conn: psycopg.Connection, batch: Batch) -> bool:
    """Whether the replica (``conn``) shows ``batch`` in the final state the primary does."""
    try:
        return batches.get(conn, batch.public_id).status == batch.status
    except NotFound:  # not replayed yet
        return False


@contextmanager
def results_connection(
    batch: Batch, primary: psycopg.Connection, *, writes: bool = False
) -> Iterator[psycopg.Connection]:
    """A connection to read the results of ``batch`` (as read on ``primary``, the request's own
    connection) from: the replica's, as the same caller, once it has replayed the batch's end;
    else ``primary`` itself. ``writes``: the read may write (a list's checkpoints), so it needs
    the primary."""
    replica = _eligible(batch, writes)
    if replica is not None:
        serving = False
        try:
            with replica.pool.caller_connection(caller()) as conn:
                if _shows(conn, batch):
                    serving = True
                    yield conn
                    return
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if serving:  # failed while reading: the request's own error (a 503)
                raise
            replica.mark_down(exc)
    yield primary


def results_pool(batch: Batch) -> WebPool:
    """The pool a download of ``batch``'s results streams from, chosen as results_connection
    chooses (the download opens its own connection later, while the response streams)."""
    replica = _eligible(batch, writes=False)
    if replica is not None:
        try:
            with replica.pool.caller_connection(caller()) as conn:
                if _shows(conn, batch):
                    return replica.pool
        except (psycopg.OperationalError, PoolTimeout) as exc:
            replica.mark_down(exc)
    return get_pool()
