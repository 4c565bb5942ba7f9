"""What every benchmark needs: its own PostgreSQL, a gunicorn serving the app,
runner processes, and memory readings of a process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench.probe import Probe
from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate
from webapp import gunicorn_command

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """A fresh, migrated PostgreSQL (default settings, fsync on); its URL."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = EmbeddedPostgres(workdir, port=5432)
    url = server.start()
    try:
        migrate(url)
        yield url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def service_env(url: str, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=url,
        MIGRATE_ON_START="false",
        PYTHONPATH=str(REPO),
        LOG_LEVEL="WARNING",
        **extra,
    )


@contextlib.contextmanager
def gunicorn(url: str, workers: int = 1) -> Iterator[tuple[str, int]]:
    """The web app under gunicorn on a free local port: (base URL, master pid)."""
    port = 18000 + os.getpid() % 1000
    web = subprocess.Popen(
        gunicorn_command(f"127.0.0.1:{port}"),
        env=service_env(url, WEB_CONCURRENCY=str(workers)),
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/healthz", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or a worker still booting
                time.sleep(0.1)
        yield base, web.pid
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)


@contextlib.contextmanager
def runners(
    url: str, count: int, log: Path | None = None, **extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` runner processes, stopped with SIGTERM on exit; their stderr to ``log`` if given."""
    env = service_env(url, **extra)
    if log is not None:
        env.update(LOG_LEVEL="INFO", LOG_FORMAT="json")
    sink = log.open("ab") if log is not None else None
    procs = [
        subprocess.Popen([sys.executable, "-m", "jobrunner"], env=env, cwd=REPO, stderr=sink)
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        if sink is not None:
            sink.close()


def worker_pids(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class PeakRss(Probe):
    """Samples a process's RSS every 5 ms while the block runs; ``peak`` in KiB."""

    def __init__(self, pid: int) -> None:
        super().__init__(0.005)
        self.pid = pid
        self.peak = rss_kib(pid)

    def sample(self, conn: None) -> None:
        self.peak = max(self.peak, rss_kib(self.pid))
