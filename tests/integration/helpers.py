"""Helpers of the integration tests, the ones that need the session's PostgreSQL or the web app:
what the tables hold (``assert_nothing_written``), posting an upload, checking a problem answer,
and scoring chunks in this process as a runner would.

Helpers that unit tests use as well (test data, ``wait_for``) live in tests/helpers.py. The
``upload`` fixture (tests/integration/conftest.py) is ``upload_file`` through the test's client.
"""

from __future__ import annotations

import functools
import io

import psycopg
from psycopg import sql

#: The migrated database every test's database is cloned from (tests/integration/conftest.py).
TEMPLATE_DB = "sentiment_template"

#: Tables that are bookkeeping, not data: the migrations' ledger changes only when migrations
#: run, never because of a request. Every other table of the public schema is checked.
BOOKKEEPING = frozenset({"schema_migrations"})

PROBLEM = "application/problem+json"

_USER_TABLES = """
SELECT c.relname
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""


def user_tables(db: psycopg.Connection) -> list[str]:
    """Every table of the public schema but BOOKKEEPING, read from the catalog, so a new table is
    covered by itself. A partitioned table is counted through its parent (its attached partitions
    are not listed); a detached partition is a table of its own, and listed."""
    return [name for (name,) in db.execute(_USER_TABLES) if name not in BOOKKEEPING]


def table_counts(db: psycopg.Connection) -> dict[str, int]:
    """How many rows each user table holds."""
    count = sql.SQL("SELECT count(*) FROM {}")
    return {name: db.execute(count.format(sql.Identifier(name))).fetchone()[0] for name in user_tables(db)}


@functools.cache
def _fresh_counts(host: str, port: int, user: str) -> dict[str, int]:
    with psycopg.connect(host=host, port=port, user=user, dbname=TEMPLATE_DB, autocommit=True) as template:
        return table_counts(template)


def fresh_counts(db: psycopg.Connection) -> dict[str, int]:
    """The row counts of a test's database as made: the template's (the migrations seed a few rows,
    e.g. the cursor signing key in service_secrets). Read once per session."""
    return dict(_fresh_counts(db.info.host, db.info.port, db.info.user))


def assert_nothing_written(db: psycopg.Connection, before: dict[str, int] | None = None) -> None:
    """No user table has a row more or less than ``before`` (``table_counts`` taken earlier in the
    test), by default than the database had when it was made. Row counts: a refused request must
    leave no row anywhere; an update of a row already there is not what this checks."""
    expected = fresh_counts(db) if before is None else before
    counts = table_counts(db)
    # A table made since ``before`` had no rows then.
    changed = {name: (expected.get(name, 0), n) for name, n in counts.items() if expected.get(name, 0) != n}
    assert not changed, f"rows written (table: (before, now)): {changed}"


def assert_problem(response, status: int, slug: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """``response`` (a Flask test client's) is a problem+json answer with ``status`` and, when
    given, the type ``/problems/<slug>``; its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if slug:
        assert body["type"] == f"/problems/{slug}"
    return body


def bearer(key: str | None) -> dict[str, str]:
    """The Authorization header of an API key (none for None)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def post_file(  # type: ignore[no-untyped-def]
    client,
    data: bytes,
    filename: str = "x.csv",
    *,
    fields: dict[str, str] | None = None,
    key: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    **kwargs,
):
    """POST /batch/upload through a Flask test client as ``curl -F`` does: the form ``fields``
    first, then the file; as ``key``'s client when given. The response, whatever its status."""
    return client.post(
        f"/batch/upload{query}",
        data={**(fields or {}), "file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
        headers={**bearer(key), **(headers or {})},
        **kwargs,
    )


def upload_file(client, data: bytes, filename: str = "x.csv", **options) -> dict:  # type: ignore[no-untyped-def]
    """``post_file`` that must be accepted: asserts the 202 and returns its JSON answer."""
    response = post_file(client, data, filename, **options)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def upload_into(database_url: str, data: bytes, filename: str = "x.csv", **options) -> dict:  # type: ignore[no-untyped-def]
    """``upload_file`` into another database than the test's, through an app of its own in this
    process (for tests of the runners, where the web app is not what is under test)."""
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False})
    try:
        return upload_file(app.test_client(), data, filename, **options)
    finally:
        app.extensions["db_pool"].close()


def uploads_copying(conn) -> int:  # type: ignore[no-untyped-def]
    """How many uploads are inside their COPY of input rows in ``conn``'s database: each holds an
    upload slot, taken before its body is read."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'COPY batch_inputs %'"
    )
    return conn.execute(query).fetchone()[0]


def process(conn, chunk, scorer: str = "fast") -> bool:  # type: ignore[no-untyped-def]
    """Score and finish one claimed chunk in this process, as a runner named 'test:0' would."""
    from core.batches.queue import RunnerIdentity, finish_chunk
    from core.settings import Settings
    from jobrunner.chunk_scoring import score_chunk

    return finish_chunk(
        conn, score_chunk(chunk, Settings(scorer=scorer)), RunnerIdentity("test:0", "test", 0, scorer)
    )


def process_next(conn):  # type: ignore[no-untyped-def]
    """Claim the next chunk and process it; the chunk, or None when the queue is empty."""
    from core.batches.queue import claim_chunk

    chunk = claim_chunk(conn, "test:0", 60)
    if chunk is not None:
        assert process(conn, chunk)
    return chunk


def score_everything(conn) -> int:  # type: ignore[no-untyped-def]
    """Claim and finish every ready chunk in this process, as a runner would; chunks done."""
    done = 0
    while process_next(conn) is not None:
        done += 1
    return done
