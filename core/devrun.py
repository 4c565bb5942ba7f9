"""``make run``: the whole service on one machine, for development (docs/operations.md).

Without DATABASE_URL it starts the embedded PostgreSQL in ``./var/postgres``, applies
the migrations, then runs the Procfile with honcho. Two things to keep:

* every stop signal (SIGINT, SIGTERM, SIGHUP) stops all of it: honcho runs in a
  process group of its own, so a signal to ``make run``'s group reaches only make
  and this process, which passes it on to honcho, then stops the embedded PostgreSQL;
* honcho's output is relayed through this process, so a terminal that has gone
  away cannot make honcho fail on a write before it has stopped its processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate
from core.settings import Settings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop:
    """The stop signals' handler: remembers the first, hands every one to honcho."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.honcho: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: object = None) -> None:
        if self.signum is None:
            self.signum = signum
            log.info("%s received: stopping", signal.Signals(signum).name)
        self.forward()

    def forward(self) -> None:
        # honcho stops its processes on SIGINT and SIGTERM (it has no SIGHUP handler).
        if self.signum is not None and self.honcho is not None and self.honcho.returncode is None:
            with suppress(ProcessLookupError):
                self.honcho.send_signal(signal.SIGINT if self.signum == signal.SIGINT else signal.SIGTERM)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)


@contextmanager
def held_signals() -> Iterator[None]:
    """Defer the stop signals while a step must run to its end.

    The programs started meanwhile (pg_ctl, initdb) inherit the blocked mask,
    so a signal to our process group cannot kill them halfway either; the
    deferred signal reaches our handler when the step is done.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def relay(source: int) -> None:
    """Copy honcho's output to ours until it ends; if ours fails, drop the rest."""
    writable = True
    while chunk := os.read(source, 65536):
        if not writable:
            continue
        try:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        except OSError:  # the terminal has gone (EIO) or the pipe reader has (EPIPE)
            writable = False
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = Stop()
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    settings = Settings.from_env()
    env = dict(os.environ)
    # The Procfile's shell expands these (its own default for HOST is the same).
    env.update(HOST=settings.host, PORT=str(settings.port))
    # The Procfile names `gunicorn` and `python`: make them this virtualenv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cluster = None
    try:
        if not settings.database_url:
            cluster = EmbeddedPostgres(Path("var/postgres"), port=settings.embedded_pg_port, listen_tcp=True)
            with held_signals():
                cluster.start()
            if stop.signum is not None:
                return stop.exit_code
            # Create the application database once; the superuser db stays for admin.
            import psycopg

            with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sentiment'").fetchone():
                    conn.execute("CREATE DATABASE sentiment")
            env["DATABASE_URL"] = cluster.url("sentiment")
            log.info("embedded PostgreSQL: psql %s", env["DATABASE_URL"])
        migrate(env["DATABASE_URL"])
        env["MIGRATE_ON_START"] = "false"
        if stop.signum is not None:
            return stop.exit_code
        runners = settings.runners
        log.info("serving on http://%s:%s with %s runner(s)", settings.host, settings.port, runners)
        command = [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-c", f"web=1,runner={runners}"]
        honcho = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        stop.honcho = honcho
        stop.forward()  # a signal that came while honcho was starting
        assert honcho.stdout is not None
        relay(honcho.stdout.fileno())
        code = honcho.wait()
        return stop.exit_code if stop.signum is not None else code
    except Exception as error:
        if stop.signum is None:
            raise
        # The stop interrupted a step (its programs got the signal too).
        log.info("stopped during startup: %s", error)
        return stop.exit_code
    finally:
        if cluster is not None:
            with held_signals():
                cluster.stop()
            log.info("embedded PostgreSQL stopped")


if __name__ == "__main__":
    sys.exit(main())
