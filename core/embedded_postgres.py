"""A private PostgreSQL cluster for development (``make run``) and the tests.

It finds server binaries (PG_BINDIR, else the ``pgserver`` wheel's, so a machine
without PostgreSQL works, else ``pg_config --bindir`` or Debian's), makes a data
directory with ``initdb`` if there is none, and starts and stops it with ``pg_ctl``.
PostgreSQL refuses to run as root, so as root (CI, containers) the server runs as an
unprivileged account (PG_SYSTEM_USER, else ``postgres`` if it exists, else
``sentiment-pg``, created on first use), given the data directory.
``python -m core.embedded_postgres start|stop|standby DATADIR ...``: ``standby``
copies a running cluster with ``pg_basebackup`` and starts the copy as a hot standby
streaming from it (docs/operations.md, "Read replicas").
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings

log = logging.getLogger(__name__)

SUPERUSER = "postgres"


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if Settings.from_env().pg_bindir:
        candidates.append(Path(Settings.from_env().pg_bindir))
    # Locate the pgserver wheel without importing it (its import has side effects).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    raise RuntimeError(
        "no PostgreSQL server binaries found: install the 'pgserver' package "
        "(pip install -e '.[test]' does), or set PG_BINDIR"
    )


def _system_user() -> pwd.struct_passwd | None:
    """The account the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    name = Settings.from_env().pg_system_user
    candidates = [name] if name else ["postgres", "sentiment-pg"]
    for candidate in candidates:
        try:
            return pwd.getpwnam(candidate)
        except KeyError:
            continue
    created = candidates[-1]
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", created],
        check=True,
    )
    return pwd.getpwnam(created)


def _open_path_to(path: Path) -> None:
    """Let other users traverse the folders above ``path`` (root only).

    The server user must reach the binaries, which may sit in a virtualenv
    under root's folders; this adds o+x (traverse, not list) where missing.
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


@dataclass
class EmbeddedPostgres:
    """One cluster: a data directory, a socket directory and a port."""

    datadir: Path
    port: int = 5432
    listen_tcp: bool = False
    fast_unsafe: bool = False  # fsync off etc.: for throwaway test clusters only
    # More addresses to listen on, besides 127.0.0.1 with listen_tcp (the partition tests
    # listen on the host ends of their veth pairs); pg_hba.conf must let their peers in.
    extra_listen_addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bindir = find_bindir()
        self.user = _system_user()

    # -- locations ---------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        return self.datadir / "socket"

    @property
    def logfile(self) -> Path:
        return self.datadir / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for ``dbname`` on this cluster."""
        if self.listen_tcp:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={self.port}"

    # -- processes ---------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {}
        env = dict(os.environ, LC_ALL="C.UTF-8")
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.datadir)
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.datadir,
            **kwargs,
        )

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def initialized(self) -> bool:
        return (self.datadir / "pgdata" / "PG_VERSION").exists()

    def _make_dirs(self) -> None:
        """The data and socket directories, owned by the server's user."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            _open_path_to(self.bindir)
            _open_path_to(self.datadir)
        for path in (self.datadir, self.socket_dir):
            self._chown(path)

    def init(self) -> None:
        """Create the cluster if the data directory has none yet."""
        self._make_dirs()
        if self.initialized():
            return
        result = self._run(
            "initdb",
            "--pgdata",
            str(self.datadir / "pgdata"),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-instructions",
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def standby(self, datadir: Path, port: int) -> EmbeddedPostgres:
        """A hot standby of this (running) cluster in ``datadir``, streaming from it: a copy taken
        with ``pg_basebackup --write-recovery-conf`` if ``datadir`` holds none yet. Start it with
        ``start()``; it serves reads only (READ_DATABASE_URL, webapp.replica)."""
        replica = EmbeddedPostgres(
            datadir, port=port, listen_tcp=self.listen_tcp, fast_unsafe=self.fast_unsafe
        )
        if replica.initialized():
            return replica
        replica._make_dirs()
        result = replica._run(
            "pg_basebackup",
            "--pgdata",
            str(replica.datadir / "pgdata"),
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--host",
            str(self.socket_dir),
            "--port",
            str(self.port),
            "--username",
            SUPERUSER,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{result.stdout}\n{result.stderr}")
        return replica

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir / "pgdata"), check=False).returncode == 0

    def start(self) -> str:
        """Initialize if needed, start if not running; return the URL."""
        self.init()
        if not self.running():
            addresses = (["127.0.0.1"] if self.listen_tcp else []) + list(self.extra_listen_addresses)
            options = [
                f"-p {self.port}",
                f"-c unix_socket_directories='{self.socket_dir}'",
                f"-c listen_addresses='{','.join(addresses)}'",
                "-c max_connections=200",
                # Vacuum follows the queue tables' churn (sql/migrations/0013_autovacuum.sql).
                "-c autovacuum_naptime=10s",
                # On a standby (ignored elsewhere): the primary's vacuum keeps the rows its
                # long reads (exports) still see, so replay does not cancel them.
                "-c hot_standby_feedback=on",
            ]
            if self.fast_unsafe:
                options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
            if not self.logfile.exists():
                self.logfile.touch()
            self._chown(self.logfile)
            result = self._run(
                "pg_ctl",
                "start",
                "--wait",
                "--timeout",
                "60",
                "-D",
                str(self.datadir / "pgdata"),
                "-l",
                str(self.logfile),
                "-o",
                " ".join(options),
                check=False,
            )
            if result.returncode != 0:
                log_tail = self.logfile.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"pg_ctl start failed:\n{result.stderr}\n{log_tail}")
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs."""
        if self.initialized() and self.running():
            self._run("pg_ctl", "stop", "--wait", "-m", mode, "-D", str(self.datadir / "pgdata"))

    def promote(self) -> None:
        """End a standby's recovery and wait until it takes writes (the failover tests)."""
        self._run("pg_ctl", "promote", "--wait", "--timeout", "60", "-D", str(self.datadir / "pgdata"))

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again with the same options (fault tests use this)."""
        self.stop(mode)
        self.start()

    def pg_bin(self, name: str) -> str:
        """Path of a client program (psql, pg_dump) matching this server."""
        return str(self.bindir / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.embedded_postgres")
    parser.add_argument("action", choices=["start", "stop", "url", "standby"])
    parser.add_argument("datadir", type=Path)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--tcp", action="store_true", help="also listen on 127.0.0.1")
    parser.add_argument("--primary", type=Path, help="standby: the running cluster's data directory")
    parser.add_argument("--primary-port", type=int, default=5432, help="standby: the running cluster's port")
    args = parser.parse_args(argv)
    cluster = EmbeddedPostgres(args.datadir, port=args.port, listen_tcp=args.tcp)
    if args.action == "standby":
        if args.primary is None:
            parser.error("standby needs --primary DATADIR")
        primary = EmbeddedPostgres(args.primary, port=args.primary_port, listen_tcp=args.tcp)
        print(primary.standby(args.datadir, args.port).start())
    elif args.action == "start":
        print(cluster.start())
    elif args.action == "stop":
        cluster.stop()
    else:
        print(cluster.url())
    return 0


if __name__ == "__main__":
    sys.exit(main())
