"""The web app's wiring: its settings and one connection pool per worker process.

The pool is created closed and opened once the app is built (so forking
servers open it in each worker, after the fork); it does not wait for the
database, so a worker starts even while PostgreSQL is down and answers 503
until it is back. Every unit of work takes ``with get_pool().connection()``.

Its connections start with the web role's bounds (:mod:`core.connections`):
every statement is cancelled after STATEMENT_TIMEOUT (a 503 ``query-timeout``,
webapp.problems), a session idle inside a transaction is ended after
IDLE_IN_TRANSACTION_TIMEOUT, and TCP keepalives run at both ends. Uploads and
exports, whose one COPY lasts as long as the client takes to send or read,
use ``get_pool().bulk_connection()`` instead: the same connection, with
BULK_STATEMENT_TIMEOUT for its transaction only (``SET LOCAL``, so the bound
falls back by itself at commit or rollback).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool

from core.connections import conninfo, milliseconds
from core.migrations import migrate
from core.queries import q
from core.settings import Settings

log = logging.getLogger(__name__)


class WebPool(ConnectionPool):
    """The web's pool: connections bounded by STATEMENT_TIMEOUT, or by BULK_STATEMENT_TIMEOUT on demand."""

    def __init__(self, dsn: str, *, bulk_statement_timeout: float, **kwargs: Any) -> None:
        self.bulk_statement_timeout_ms = milliseconds(bulk_statement_timeout)
        super().__init__(dsn, **kwargs)

    @contextmanager
    def bulk_connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection whose transaction may run statements for BULK_STATEMENT_TIMEOUT.

        For the one long COPY of an upload or an export. The bound is transaction-local:
        it opens the transaction, which the pool commits (or rolls back) on leaving.
        """
        with self.connection(timeout) as conn:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(self.bulk_statement_timeout_ms),)
            )
            yield conn


def init_app(app: Flask, settings: Settings) -> None:
    """Apply migrations if asked, open the pool and attach it to ``app``."""
    if settings.migrate_on_start:
        try:
            migrate(settings.database_url)
        except psycopg.OperationalError as exc:
            log.warning("could not apply migrations at start-up (%s); will serve 503s", exc)
    pool = WebPool(
        conninfo(settings, "web"),
        bulk_statement_timeout=settings.bulk_statement_timeout,
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        timeout=settings.db_pool_timeout,
        check=ConnectionPool.check_connection,
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
