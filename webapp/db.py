"""The web app's wiring: its settings and one connection pool per worker process.

The pool is created closed and opened once the app is built (so forking
servers open it in each worker, after the fork); it does not wait for the
database, so a worker starts even while PostgreSQL is down and answers 503
until it is back. Every unit of work takes ``with get_pool().connection()``.
"""

from __future__ import annotations

import atexit
import logging

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool

from core.migrations import migrate
from core.queries import q
from core.settings import Settings

log = logging.getLogger(__name__)


def init_app(app: Flask, settings: Settings) -> None:
    """Apply migrations if asked, open the pool and attach it to ``app``."""
    if settings.migrate_on_start:
        try:
            migrate(settings.database_url)
        except psycopg.OperationalError as exc:
            log.warning("could not apply migrations at start-up (%s); will serve 503s", exc)
    pool = ConnectionPool(
        settings.database_url,
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


def get_pool() -> ConnectionPool:
    """The current app's pool."""
    return current_app.extensions["db_pool"]


def signing_key() -> str:
    """SECRET_KEY, or the key every web process shares through the database."""
    if settings().secret_key:
        return settings().secret_key
    cached = current_app.extensions.get("cursor_signing_key")
    if cached is None:
        with get_pool().connection() as conn:
            row = conn.execute(q("service_secrets_get"), {"name": "cursor_signing_key"}).fetchone()
        if row is None:
            raise RuntimeError("service_secrets has no cursor_signing_key: migrations not applied?")
        cached = current_app.extensions["cursor_signing_key"] = row[0]
    return cached
