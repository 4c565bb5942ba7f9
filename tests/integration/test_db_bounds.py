"""Every database session is bounded: statement_timeout on web requests (longer for uploads and
exports), idle_in_transaction_session_timeout and TCP keepalives on web and runner sessions,
and migrations that wait for a lock at most lock_timeout instead of queueing every query."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg.errors import LockNotAvailable

from core.clients import LOCAL_USER
from core.connections import conninfo
from core.embedded_postgres import EmbeddedPostgres
from core.migrations import MIGRATION_LOCK_KEY, load_migrations, migrate
from core.queries import sql_dir
from core.settings import Settings
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import WebServer, free_port
from tests.integration.helpers import score_everything
from webapp import create_app
from webapp.db import WebPool


def _show(conn: psycopg.Connection, name: str) -> str:
    # SHOW takes no parameters; current_setting does, and reads the same value.
    return conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]


@contextlib.contextmanager
def _web_pool(**config: object) -> Iterator[WebPool]:
    """The connection pool of a web app made with these settings (no migrations), closed after."""
    pool = create_app({"migrate_on_start": False, **config}).extensions["db_pool"]
    try:
        yield pool
    finally:
        pool.close()


def test_web_sessions_carry_their_statement_and_idle_bounds(database_url):
    bounds = {"statement_timeout": 12.5, "bulk_statement_timeout": 600.0, "idle_in_transaction_timeout": 45.0}
    with _web_pool(database_url=database_url, **bounds) as pool:
        with pool.connection() as conn:
            assert _show(conn, "statement_timeout") == "12500ms"
            assert _show(conn, "idle_in_transaction_session_timeout") == "45s"
            assert _show(conn, "application_name") == "sentiment-web"
        with pool.caller_connection(LOCAL_USER, bulk=True) as conn:
            assert _show(conn, "statement_timeout") == "10min"
        with pool.connection() as conn:  # the bulk bound ended with its transaction
            assert _show(conn, "statement_timeout") == "12500ms"


@pytest.fixture(scope="module")
def tcp_cluster() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL reached over TCP (the session's cluster listens on a Unix socket only,
    where keepalives do not apply and the server reads them as 0)."""
    datadir = Path(tempfile.mkdtemp(prefix="sentiment-tcp-"))
    cluster = EmbeddedPostgres(datadir, port=free_port(), listen_tcp=True, fast_unsafe=True)
    cluster.start()
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(datadir, ignore_errors=True)


def _client_keepalive(conn: psycopg.Connection) -> tuple[int, int, int, int]:
    """The keepalive options of the client's own socket, read from the kernel."""
    sock = socket.socket(fileno=conn.pgconn.socket)
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        )
    finally:
        sock.detach()  # the socket stays libpq's


def test_web_and_runner_connections_use_tcp_keepalives_at_both_ends(tcp_cluster):
    url = tcp_cluster.url("postgres")
    assert "127.0.0.1" in url
    migrate(url)  # the web's connections work as the role a migration creates
    with _web_pool(database_url=url, db_keepalive_seconds=17) as pool, pool.connection() as conn:
        # The server's side of the connection ...
        assert _show(conn, "tcp_keepalives_idle") == "17"
        assert _show(conn, "tcp_keepalives_interval") == "10"
        assert _show(conn, "tcp_keepalives_count") == "3"
        # ... and ours.
        assert _client_keepalive(conn) == (1, 17, 10, 3)
    runner_settings = Settings(database_url=url, db_keepalive_seconds=23)
    with psycopg.connect(conninfo(runner_settings, "runner"), autocommit=True) as conn:
        assert _show(conn, "tcp_keepalives_idle") == "23"
        assert _client_keepalive(conn) == (1, 23, 10, 3)
        assert _show(conn, "idle_in_transaction_session_timeout") == "1min"
        assert _show(conn, "statement_timeout") == "0"  # runners: no statement bound
        assert _show(conn, "application_name") == "sentiment-runner"


def test_a_session_left_idle_in_a_transaction_is_ended(db, database_url):
    settings = Settings(database_url=database_url, idle_in_transaction_timeout=0.3)
    conn = psycopg.connect(conninfo(settings, "runner"))  # not autocommit: the SELECT opens a transaction
    try:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        wait_for(
            lambda: (
                db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 0
            ),
            timeout=30,
        )
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            conn.execute("SELECT 1")
    finally:
        conn.close()


def _waits_on_a_lock(db: psycopg.Connection, statement: str, longer_than: str) -> bool:
    """Whether a web session has been waiting on a lock in ``statement`` for longer than that."""
    return (
        db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sentiment-web' "
            "AND wait_event_type = 'Lock' AND query ILIKE %s AND now() - query_start > %s::interval",
            (f"{statement}%", longer_than),
        ).fetchone()[0]
        > 0
    )


def test_statement_timeout_cancels_a_request_and_uploads_and_exports_get_longer(db, database_url, tmp_path):
    web = WebServer(database_url, tmp_path, STATEMENT_TIMEOUT="0.2", BULK_STATEMENT_TIMEOUT="10m")
    base = web.base
    try:
        texts = sample_texts(300)
        created = requests.post(
            f"{base}/batch/upload", files={"file": ("x.csv", make_csv(texts))}, timeout=30
        )
        batch_id = created.json()["batch_id"]
        score_everything(db)

        with psycopg.connect(database_url) as holder:
            holder.execute("LOCK TABLE batch_results IN ACCESS EXCLUSIVE MODE")
            # A results page waits for the lock past STATEMENT_TIMEOUT: cancelled, and a 503 problem.
            page = requests.get(f"{base}/batch/{batch_id}/results", timeout=30)
            assert page.status_code == 503, page.text
            assert page.headers["Content-Type"] == "application/problem+json"
            assert page.json()["type"] == "/problems/query-timeout" and page.headers["Retry-After"]
            # An export may wait far longer than that (5 times STATEMENT_TIMEOUT here) and still finish.
            export: dict[str, requests.Response] = {}
            reader = threading.Thread(
                target=lambda: export.update(
                    r=requests.get(f"{base}/batch/{batch_id}/results.csv", timeout=60)
                )
            )
            reader.start()
            wait_for(lambda: _waits_on_a_lock(db, "COPY", "1 second"), timeout=30)
            holder.rollback()
            reader.join(60)
        assert export["r"].status_code == 200
        assert len(list(csv.reader(io.StringIO(export["r"].text)))) == 1 + len(texts)

        with psycopg.connect(database_url) as holder:
            # The partitioned parent (the lock reaches every partition, the upload's among them), in
            # SHARE mode: it stops the COPY's writes (the upload finds its partitions made, by name,
            # without locking them).
            holder.execute("LOCK TABLE batch_inputs IN SHARE MODE")
            upload: dict[str, requests.Response] = {}
            sender = threading.Thread(
                target=lambda: upload.update(
                    r=requests.post(
                        f"{base}/batch/upload", files={"file": ("y.csv", make_csv(texts))}, timeout=60
                    )
                )
            )
            sender.start()
            wait_for(lambda: _waits_on_a_lock(db, "COPY", "1 second"), timeout=30)
            holder.rollback()
            sender.join(60)
        assert upload["r"].status_code == 202 and upload["r"].json()["total_count"] == len(texts)
        assert "Traceback" not in web.logfile.read_text(errors="replace")
    finally:
        web.stop()


def _with_one_more_migration(folder: Path, sql: str) -> int:
    shutil.copytree(sql_dir() / "migrations", folder)
    version = len(load_migrations()) + 1
    (folder / f"{version:04d}_probe.sql").write_text(sql)
    return version


def _ungranted(db: psycopg.Connection, mode: str) -> bool:
    return (
        db.execute(
            "SELECT count(*) FROM pg_locks "
            "WHERE NOT granted AND mode = %s AND relation = 'batches'::regclass",
            (mode,),
        ).fetchone()[0]
        > 0
    )


def test_a_migration_blocked_by_a_long_reader_gives_up_instead_of_stalling_everyone(
    db, database_url, tmp_path
):
    folder = tmp_path / "migrations"
    version = _with_one_more_migration(folder, "ALTER TABLE batches ADD COLUMN probe integer;\n")
    outcome: dict[str, object] = {}

    def run_migration() -> None:
        try:
            outcome["applied"] = migrate(database_url, folder=folder, lock_timeout=5, attempts=1)
        except LockNotAvailable as exc:
            outcome["error"] = exc

    with psycopg.connect(database_url) as holder, psycopg.connect(database_url, autocommit=True) as other:
        # A long export holds ACCESS SHARE on batches until its transaction ends.
        holder.execute("SELECT count(*) FROM batches")
        migrator = threading.Thread(target=run_migration)
        migrator.start()
        wait_for(lambda: _ungranted(db, "AccessExclusiveLock"), timeout=30)
        # A query that comes now queues behind the waiting ALTER TABLE ...
        counted: dict[str, int] = {}
        query = threading.Thread(
            target=lambda: counted.update(n=other.execute("SELECT count(*) FROM batches").fetchone()[0])
        )
        query.start()
        wait_for(lambda: _ungranted(db, "AccessShareLock"), timeout=30)
        migrator.join(60)
        query.join(60)
        # ... and is answered once the migration gives up, while the long reader still holds its lock.
        assert isinstance(outcome.get("error"), LockNotAvailable)
        assert counted == {"n": 0}
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    recorded = db.execute("SELECT count(*) FROM schema_migrations WHERE version = %s", (version,)).fetchone()[
        0
    ]
    assert recorded == 0
    assert (
        db.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'batches' AND column_name = 'probe'"
        ).fetchone()[0]
        == 0
    )
    # With the reader gone, the same migration goes through.
    assert migrate(database_url, folder=folder, lock_timeout=5, attempts=1) == [version]


def test_the_migrators_lock_is_waited_for_in_bounded_attempts(db, database_url, tmp_path, caplog):
    folder = tmp_path / "migrations"
    version = _with_one_more_migration(folder, "SELECT 1;\n")
    with psycopg.connect(database_url, autocommit=True) as other_migrator:
        other_migrator.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        with pytest.raises(LockNotAvailable):
            migrate(database_url, folder=folder, lock_timeout=0.2, attempts=2)
        # Tried again while the lock is held, it goes on as soon as the other migrator is done.
        outcome: dict[str, list[int]] = {}
        with caplog.at_level(logging.WARNING, logger="core.migrations"):
            migrator = threading.Thread(
                target=lambda: outcome.update(
                    applied=migrate(database_url, folder=folder, lock_timeout=0.2, attempts=50)
                )
            )
            migrator.start()
            wait_for(lambda: "waits for a lock" in caplog.text, timeout=30)
            other_migrator.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            migrator.join(60)
    assert outcome == {"applied": [version]}


def test_connection_strings_keep_the_operators_own_options():
    settings = Settings(database_url="postgresql://u@db.example/app?options=-c%20statement_timeout%3D5s")
    text = conninfo(replace(settings, statement_timeout=30), "web")
    # Ours first, the operator's after: the last -c wins.
    assert "-c statement_timeout=30000 -c statement_timeout=5s" in text
    assert "keepalives=1" in text and "application_name=sentiment-web" in text
    named = Settings(database_url="postgresql://u@db.example/app?application_name=mine")
    assert "application_name=mine" in conninfo(named, "runner")
