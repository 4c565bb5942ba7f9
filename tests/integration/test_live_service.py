"""`make run`'s process tree for real: honcho, gunicorn and runners, over HTTP and by signal.

A terminal (or ``timeout``, or a supervisor) signals the whole foreground process
group, so the tests start the tree in a process group of its own and signal that
group. Afterwards no process of the tree may be left: not honcho, gunicorn or a
runner, nor the embedded PostgreSQL of the test's data directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from core.embedded_postgres import EmbeddedPostgres
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO, free_port

RUNNERS = 2


# -- what the kernel says ---------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            # The kernel prints each 32-bit word of the address in host byte order.
            words = [int(address[i : i + 8], 16) for i in range(0, len(address), 8)]
            found.add(str(ipaddress.ip_address(b"".join(struct.pack("=I", w) for w in words))))
    return found


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # start time in clock ticks since boot: tells a reused pid apart
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """Still running (a zombie waiting for its reaper counts as gone)."""
        now = _read_proc(self.pid)
        return now is not None and now[2] == self.start and now[0] != "Z"


def _read_proc(pid: int) -> tuple[str, int, int, tuple[str, ...]] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19]), tuple(a.decode(errors="replace") for a in argv if a)


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _read_proc(int(entry.name))) is not None:
            table[int(entry.name)] = Proc(int(entry.name), info[1], info[2], info[3])
    return table


def with_descendants(roots: list[Proc], table: dict[int, Proc]) -> list[Proc]:
    found = {p.pid: p for p in roots}
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for proc in table.values():
            if proc.ppid == parent and proc.pid not in found:
                found[proc.pid] = proc
                frontier.append(proc.pid)
    return list(found.values())


def is_gunicorn(proc: Proc) -> bool:
    return any(os.path.basename(arg) == "gunicorn" for arg in proc.argv[:2])


def is_runner(proc: Proc) -> bool:
    return proc.argv[1:3] == ("-m", "jobrunner")


# -- a `make run` in a process group of its own -----------------------------------------


def _signals_as_a_terminal_leaves_them() -> None:
    """Ctrl-C and Ctrl-\\ at their defaults, as a shell's foreground job has them: a test run
    started in the background by a shell without job control inherits them ignored, and make
    keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class ProcessGroup:
    """A command started as a terminal's foreground job: leader of a new process group."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path, pgdata: Path | None):
        self.log_path = log
        self.pgdata = pgdata
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_signals_as_a_terminal_leaves_them,
        )
        self.seen: dict[int, Proc] = {}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[Proc]:
        """The leader and its descendants, and the embedded PostgreSQL of ``pgdata`` with its
        backends (pg_ctl detaches the server, so it is nobody's descendant); remembered."""
        table = process_table()
        roots = [table[self.proc.pid]] if self.proc.pid in table else []
        if self.pgdata is not None:
            roots += [p for p in table.values() if str(self.pgdata) in p.argv]
        for proc in with_descendants(roots, table):
            self.seen[proc.pid] = proc
        return list(self.seen.values())

    def serving(self, base: str) -> bool:
        assert self.proc.poll() is None, self.output()
        try:
            requests.get(f"{base}/readyz", timeout=1).raise_for_status()
        except requests.RequestException:
            return False
        tree = self.tree()
        return any(map(is_gunicorn, tree)) and sum(map(is_runner, tree)) == RUNNERS

    def stop(self, signum: int) -> int:
        """Signal the whole group, as a terminal does; the leader's exit status."""
        self.tree()
        os.killpg(self.proc.pid, signum)
        return self.proc.wait(timeout=90)

    def left_behind(self) -> list[Proc]:
        return [p for p in self.seen.values() if p.alive()]

    def assert_nothing_left(self) -> None:
        try:
            wait_for(lambda: not self.left_behind(), timeout=30, interval=0.1)
        except AssertionError:
            raise AssertionError(f"left behind: {self.left_behind()}\n{self.output()}") from None

    def close(self) -> None:
        """After a failed test: kill whatever of this tree is still there."""
        if self.proc.poll() is None:
            self.tree()
        server = {p.pid for p in self.seen.values() if self.pgdata is not None and str(self.pgdata) in p.argv}
        for proc in self.left_behind():
            if proc.pid not in server and proc.ppid not in server:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        if self.pgdata is not None:  # the server and its backends, the proper way
            with contextlib.suppress(subprocess.CalledProcessError):
                EmbeddedPostgres(self.pgdata.parent).stop("immediate")
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)
        self._log.close()


def devrun_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Not the outer make's (under `make test`), nor a database or address of the caller's.
        if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DATABASE_URL", "HOST"}
    }
    env.update(PYTHONPATH=str(REPO), POLL_SECONDS="0.5", RUNNERS=str(RUNNERS), **extra)
    return env


# -- the tests ------------------------------------------------------------------------


def test_devrun_serves_the_readme_flow_and_stops_on_ctrl_c(database_url, tmp_path):
    port = free_port()
    group = ProcessGroup(
        [sys.executable, "-m", "core.devrun"],
        cwd=REPO,
        env=devrun_env(DATABASE_URL=database_url, PORT=str(port)),
        log=tmp_path / "devrun.log",
        pgdata=None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: group.serving(base), timeout=60, interval=0.2)
        # Without HOST, on the loopback interface only.
        assert listening_addresses(port) == {"127.0.0.1"}
        csv_path = tmp_path / "reviews.csv"
        csv_path.write_bytes(make_csv(sample_texts(2_000)))
        # curl -F "file=@reviews.csv" http://127.0.0.1:8000/batch/upload
        with csv_path.open("rb") as handle:
            answer = requests.post(
                f"{base}/batch/upload", files={"file": ("reviews.csv", handle)}, timeout=30
            )
        assert answer.status_code == 202
        batch = answer.json()
        assert answer.headers["Location"] == f"/batch/{batch['batch_id']}"
        status = wait_for(
            lambda: (
                (s := requests.get(f"{base}{answer.headers['Location']}", timeout=5).json())["status"]
                == "completed"
                and s
            ),
            timeout=90,
            interval=0.2,
        )
        assert sum(status["summary"][s] for s in ("positive", "negative", "neutral")) == 2_000
        page = requests.get(f"{base}/batch/{batch['batch_id']}/results?page=2&per_page=100", timeout=5)
        assert [r["row"] for r in page.json()["results"]] == list(range(101, 201))
        assert 'rel="next"' in page.headers["Link"]
        # curl --data-binary @reviews.csv -H 'Content-Type: text/csv' .../batch/upload
        answer = requests.post(
            f"{base}/batch/upload",
            data=csv_path.read_bytes(),
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert answer.status_code == 202
        missing = requests.get(f"{base}/batch/{batch['batch_id']}x", timeout=5)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"

        # Ctrl-C in a terminal signals the whole foreground process group.
        code = group.stop(signal.SIGINT)
        output = group.output()
        assert code == 128 + signal.SIGINT, output
        assert "runner.1" in output and "runner.2" in output, output
        group.assert_nothing_left()
    finally:
        group.close()


@pytest.fixture(scope="module")
def make_run_dir() -> Iterator[Path]:
    """A folder in which `make run` runs the repository's Procfile, with its own
    ``var/postgres`` (created once, reused by the tests of this module)."""
    # A short path under /tmp: the server's socket path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="make-run-"))
    (folder / "Procfile").symlink_to(REPO / "Procfile")
    recipe = re.search(r"^run:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None and "core.devrun" in recipe.group(1)
    (folder / "Makefile").write_text(f"BIN := {Path(sys.executable).parent}\nrun:\n\t{recipe.group(1)}\n")
    try:
        yield folder
    finally:
        try:
            EmbeddedPostgres(folder / "var" / "postgres").stop("immediate")  # if a test left it running
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("signum", "host"),
    [
        # `timeout make run`, a supervisor; the default address
        (signal.SIGTERM, None),
        # the terminal closed; HOST set
        (signal.SIGHUP, "0.0.0.0"),
        # Ctrl-C, with make and the embedded PostgreSQL
        (signal.SIGINT, None),
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_make_run_leaves_nothing_behind(make_run_dir, tmp_path, signum, host):
    port = free_port()
    pgdata = make_run_dir / "var" / "postgres" / "pgdata"
    env = devrun_env(PORT=str(port), EMBEDDED_PG_PORT=str(free_port()), **({"HOST": host} if host else {}))
    group = ProcessGroup(["make", "run"], make_run_dir, env, tmp_path / "make-run.log", pgdata=pgdata)
    try:
        wait_for(lambda: group.serving(f"http://127.0.0.1:{port}"), timeout=90, interval=0.2)
        assert listening_addresses(port) == {host or "127.0.0.1"}
        tree = group.tree()
        assert any(str(pgdata) in p.argv for p in tree), tree  # the embedded PostgreSQL runs

        code = group.stop(signum)

        group.assert_nothing_left()
        assert not EmbeddedPostgres(pgdata.parent).running()
        assert not listening_addresses(port)
        output = group.output()
        assert code == -signum, output  # make passed the stop on, then died of the signal itself
        assert f"{signal.Signals(signum).name} received: stopping" in output, output
        assert "embedded PostgreSQL stopped" in output, output
    finally:
        group.close()
