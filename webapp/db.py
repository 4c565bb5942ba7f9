"""The web app's settings, and its connection pool: one per worker process.

The pool opens after the fork, in each worker, and does not wait for the database: a worker
starts while PostgreSQL is down and answers 503 until it is back. ``with connection() as conn``
runs its transaction as the request's caller (:mod:`core.clients`): one round trip sets, for the
transaction only, the role (``sentiment_web``, or ``sentiment_web_admin`` for an admin) and
``sentiment.client``, so row-level security shows it that caller's batches and nothing else, and
a pooled connection carries nothing to the next request. A bare ``get_pool().connection()`` sees
no batch at all: it is for sign-in, sessions and health checks. Connections have the web role's
bounds (:mod:`core.connections`): STATEMENT_TIMEOUT, or, through ``upload_connection()`` and
``bulk_connection()``, the longer BULK_STATEMENT_TIMEOUT for an upload's COPY or a whole-batch pass.

After a failover (DATABASE_URL listing several hosts, ``target_session_attrs=read-write``) the
pool keeps only sessions on the server that takes writes: a dead one fails the check when it is
handed out, one whose server became read-only fails :func:`core.connections.server_check`, and
one that meets SQLSTATE 25006 in a request is closed on its way back, so the next request opens
a new one, which libpq points at the new primary. psycopg_pool doubles its pause between
attempts to reconnect without bound (a 30 s outage would leave the pool waiting about as long
again once the database is back); ours stop growing at :data:`RECONNECT_MAX_DELAY`
(docs/operations.md, "Failover").
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from core import batches
from core.clients import Caller
from core.connections import conninfo, milliseconds, server_check
from core.migrations import migrate
from core.queries import q
from core.settings import Settings

log = logging.getLogger(__name__)


#: The database role a caller's transactions run as.
CLIENT_ROLE = "sentiment_web"
ADMIN_ROLE = "sentiment_web_admin"

_AS_CALLER = (
    "SELECT set_config('role', %(role)s, true), set_config('sentiment.client', %(client)s, true),"
    " set_config('statement_timeout', %(statement_timeout)s, true)"
)


#: The longest pause between a pool's attempts to open a connection while the database is away.
RECONNECT_MAX_DELAY = 2.0


class Reconnection(AttemptWithBackoff):
    """psycopg_pool's backoff between attempts to reconnect, its pause at most RECONNECT_MAX_DELAY."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


class WebPool(ConnectionPool):
    """The web's pool: connections bounded by STATEMENT_TIMEOUT, or by BULK_STATEMENT_TIMEOUT on demand."""

    def __init__(
        self, dsn: str, *, statement_timeout: float, bulk_statement_timeout: float, **kwargs: Any
    ) -> None:
        self.statement_timeout_ms = milliseconds(statement_timeout)
        self.bulk_statement_timeout_ms = milliseconds(bulk_statement_timeout)
        super().__init__(dsn, **kwargs)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """psycopg_pool's, except that a session that met a read-only server is not used again."""
        with super().connection(timeout) as conn:
            try:
                yield conn
            except psycopg.errors.ReadOnlySqlTransaction:
                # A standby, or a primary demoted or fenced: a pooled session would meet it again.
                conn.close()
                raise

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # psycopg_pool's hook for each attempt to open a connection (tests/unit/test_connections.py
        # checks it is still there): the first attempt of a series gets our capped backoff.
        super()._add_connection(attempt or Reconnection(timeout=self.reconnect_timeout), growing)

    def timeout_ms(self, bulk: bool) -> int:
        """The statement timeout of this pool's transactions, in milliseconds (0: none)."""
        return self.bulk_statement_timeout_ms if bulk else self.statement_timeout_ms

    @contextmanager
    def caller_connection(
        self, caller: Caller, *, bulk: bool = False, timeout_ms: int | None = None
    ) -> Iterator[psycopg.Connection]:
        """A pooled connection whose transaction runs as ``caller`` (role and sentiment.client).

        ``bulk``: its statements may run for BULK_STATEMENT_TIMEOUT, for the one long COPY of an
        upload or an export; ``timeout_ms`` sets another bound instead. Everything is
        transaction-local: it opens the transaction, which the pool commits (or rolls back) on
        leaving.
        """
        with self.connection() as conn:
            self.act_as(conn, caller, bulk=bulk, timeout_ms=timeout_ms)
            yield conn

    def act_as(
        self, conn: psycopg.Connection, caller: Caller, *, bulk: bool = False, timeout_ms: int | None = None
    ) -> None:
        """Open ``conn``'s transaction as ``caller``, with :meth:`caller_connection`'s bounds."""
        timeout = self.timeout_ms(bulk) if timeout_ms is None else timeout_ms
        params = {
            "role": ADMIN_ROLE if caller.admin else CLIENT_ROLE,
            "client": caller.client or "",
            "statement_timeout": str(timeout),
        }
        conn.execute(_AS_CALLER, params)


def caller() -> Caller:
    """Who the current request comes from (set by webapp.auth.sign_in before any view runs)."""
    return g.caller


def connection() -> AbstractContextManager[psycopg.Connection]:
    """A pooled connection whose transaction sees what the current request's caller may see."""
    return get_pool().caller_connection(caller())


def bulk_connection() -> AbstractContextManager[psycopg.Connection]:
    """As :func:`connection`, with BULK_STATEMENT_TIMEOUT: for a whole-batch pass (an export's read,
    a column's first group summary)."""
    return get_pool().caller_connection(caller(), bulk=True)


@contextmanager
def upload_connection() -> Iterator[tuple[psycopg.Connection, int]]:
    """As :func:`connection`, with BULK_STATEMENT_TIMEOUT for the upload's COPY, and the upload's
    batch id: taken, and its range's partitions made, on the same connection in a short
    transaction of its own that commits before the caller's transaction begins
    (:func:`core.batches.reserve_id`)."""
    pool = get_pool()
    with pool.connection() as conn:
        batch_id = batches.reserve_id(conn)
        pool.act_as(conn, caller(), bulk=True)
        yield conn, batch_id


def init_app(app: Flask, settings: Settings) -> None:
    """Apply migrations if asked, open the pool and attach it to ``app``."""
    if settings.migrate_on_start:
        try:
            migrate(settings.database_url)
        except psycopg.OperationalError as exc:
            log.warning("could not apply migrations at start-up (%s); will serve 503s", exc)
    pool = WebPool(
        conninfo(settings, "web"),
        statement_timeout=settings.statement_timeout,
        bulk_statement_timeout=settings.bulk_statement_timeout,
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        timeout=settings.db_pool_timeout,
        check=server_check(settings.database_url),
        name="webapp",
    )
    pool.open(wait=False)
    app.extensions["db_pool"] = pool
    atexit.register(pool.close)


def settings() -> Settings:
    """The current app's settings."""
    return current_app.extensions["settings"]


def get_pool() -> WebPool:
    """The current app's pool."""
    return current_app.extensions["db_pool"]


def signing_key(conn: psycopg.Connection | None = None) -> str:
    """SECRET_KEY, or the key every web process shares through the database.

    A view that already holds a pooled connection passes it (``conn``): taking a
    second one while holding the first could wait for the pool to time out.
    """
    if settings().secret_key:
        return settings().secret_key
    cached = current_app.extensions.get("cursor_signing_key")
    if cached is None:
        with contextlib.nullcontext(conn) if conn is not None else get_pool().connection() as held:
            row = held.execute(q("service_secrets_get"), {"name": "cursor_signing_key"}).fetchone()
        if row is None:
            raise RuntimeError("service_secrets has no cursor_signing_key: migrations not applied?")
        cached = current_app.extensions["cursor_signing_key"] = row[0]
    return cached
