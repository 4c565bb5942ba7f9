"""Apply the numbered files of ``sql/migrations`` in order, once each (``python -m core.migrations``).

Every process that needs the schema (``make run``, web workers, runners, the tests)
calls :func:`migrate`: a session advisory lock lets one of them apply the pending
files while the others wait, then find nothing to do. Each file runs in its own
transaction and is recorded in ``schema_migrations`` with a checksum, so a file
changed after it was applied is an error. Every lock is waited for at most
LOCK_TIMEOUT_SECONDS: DDL queued behind a long export would queue every later query
on its table behind itself. So the attempt rolls back and is tried again, up to
LOCK_ATTEMPTS times, then fails with ``LockNotAvailable`` (docs/security.md,
"Database sessions").
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg.errors import LockNotAvailable
from psycopg.rows import dict_row

from core.connections import milliseconds
from core.queries import sql_dir

log = logging.getLogger(__name__)

# An arbitrary constant shared by every process of this service.
MIGRATION_LOCK_KEY = 7_240_113_901
#: The longest one attempt waits for any lock (lock_timeout), and how many attempts are made.
LOCK_TIMEOUT_SECONDS = 5.0
LOCK_ATTEMPTS = 12
#: Pause after the first failed attempt; it doubles, up to the most.
RETRY_PAUSE_SECONDS = 0.5
RETRY_PAUSE_MOST_SECONDS = 5.0

T = TypeVar("T")

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schema_migrations IS 'Which sql/migrations files were applied, and when.'
"""


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files, in version order; gaps and duplicates are errors."""
    folder = folder or sql_dir() / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"expected migration {expected:04d}, found {migration.version:04d}")
    return found


def _retrying(action: Callable[[], T], what: str, attempts: int) -> T:
    """``action()``, tried again after a pause while it fails to take a lock in time."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except LockNotAvailable:
            if attempt >= attempts:
                log.error(
                    "%s: no lock after %d attempts; giving up (something holds it: a long query?)",
                    what,
                    attempt,
                )
                raise
            pause = min(RETRY_PAUSE_MOST_SECONDS, RETRY_PAUSE_SECONDS * 2 ** (attempt - 1))
            log.warning(
                "%s waits for a lock another session holds; attempt %d of %d in %.1f s",
                what,
                attempt + 1,
                attempts,
                pause,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )


def migrate(
    conninfo: str,
    *,
    folder: Path | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    attempts: int = LOCK_ATTEMPTS,
) -> list[int]:
    """Apply the pending migrations to the database; return the versions applied.

    Each wait for a lock lasts at most ``lock_timeout`` seconds, and is tried ``attempts`` times.
    """
    migrations = load_migrations(folder)
    applied_now: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (str(milliseconds(lock_timeout)),))
        _retrying(
            lambda: conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)), "migrator", attempts
        )
        try:
            _retrying(lambda: conn.execute(_CREATE_LEDGER), "schema_migrations", attempts)
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SELECT version, checksum FROM schema_migrations")
                recorded = {row["version"]: row["checksum"] for row in cur}
            for migration in migrations:
                if migration.version in recorded:
                    if recorded[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} changed "
                            "after it was applied; add a new migration instead"
                        )
                    continue
                label = f"migration {migration.version:04d}_{migration.name}"
                _retrying(lambda m=migration: _apply(conn, m), label, attempts)
                log.info("applied %s", label)
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def pending(conn: psycopg.Connection) -> list[int]:
    """Versions on disk not yet recorded in the database (for readiness checks)."""
    done: set[int] = set()
    with conn.cursor(row_factory=dict_row) as cur:
        ledger = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present").fetchone()
        if ledger and ledger["present"]:
            done = {row["version"] for row in cur.execute("SELECT version FROM schema_migrations")}
    return [m.version for m in load_migrations() if m.version not in done]


def main() -> None:
    from core.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        applied = migrate(Settings.from_env().database_url)
    except LockNotAvailable as exc:
        raise SystemExit(f"migrations not applied: {exc}".strip()) from None
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")


if __name__ == "__main__":
    main()
