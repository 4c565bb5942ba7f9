"""Where PostgreSQL's CPU goes: per process type, and per statement where pg_stat_statements is loaded.

``PgCpuProbe`` reads ``/proc/<pid>/stat`` (utime + stime) of the postmaster and
of each of its children every ``interval`` seconds in a thread, and names each
child by its ``backend_type`` in ``pg_stat_activity`` (by its process title if
the view never showed it; client backends also by ``application_name``).
``lap()`` and ``stop()`` return a ``CpuBreakdown`` of the seconds since the
previous lap. A process that ends between two samples takes with it the CPU
it used since its last sample (an autovacuum worker may live less than one
interval): that part is ``ENDED``, the exact total (the postmaster's own time
and its reaped children's, plus every live child's, read at each lap) minus
what the samples attribute. The probe's own session is left out of all of it.

With ``pg_stat_statements`` loaded, each lap also lists the statements'
calls, rows and execution time, named after ``sql/queries`` where the text
matches one. ``cluster()`` loads it when the server's binaries ship it: the
system's PostgreSQL 15 (``PG_BINDIR=/usr/lib/postgresql/15/bin``) does, the
pgserver wheel's 16.2, which the benchmarks use by default, does not.
Execution time is not CPU time (it includes waits), and a backend also spends
CPU outside it (parsing, commits, the protocol): the split of the client
backends' CPU by statement kind is in proportion to execution time.

``python -m bench.pgcpu [--rows N]`` measures one batch as ``bench.ceiling.cpu``
does and prints the breakdown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import Row

TICK = os.sysconf("SC_CLK_TCK")
ENDED = "ended between samples"
POSTMASTER = "postmaster"
# Columns of the report, in order; any other backend type is summed as "other".
SHOWN = {
    "client backend": "client backends",
    "autovacuum": "autovacuum",
    "checkpointer": "checkpointer",
    "walwriter": "WAL writer",
    "background writer": "background writer",
    "walsender": "walsender",
}
# Background process titles (``postgres: <title>``) for processes pg_stat_activity never showed.
TITLES = (
    "autovacuum launcher",
    "autovacuum worker",
    "logical replication launcher",
    "logical replication worker",
    "parallel worker",
    "background writer",
    "checkpointer",
    "walwriter",
    "walsender",
    "walreceiver",
    "archiver",
    "startup",
    "logger",
    "stats collector",
)
MARK = "/* pgcpu probe */"  # in the probe's own statements, to leave them out of pg_stat_statements


# -- /proc ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    started: int  # clock ticks after boot: a reused pid is another process
    cpu: float  # utime + stime, seconds
    reaped: float  # cutime + cstime: its waited-for children's, seconds


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line; the command name between parentheses may hold anything."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()  # from field 3 (state) on
    return ProcStat(
        pid=int(head.split("(", 1)[0]),
        ppid=int(fields[1]),
        started=int(fields[19]),
        cpu=(int(fields[11]) + int(fields[12])) / TICK,
        reaped=(int(fields[13]) + int(fields[14])) / TICK,
    )


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def title_type(cmdline: str) -> str | None:
    """The backend type a PostgreSQL process title names (``postgres: checkpointer``), if any."""
    title = cmdline.replace("\0", " ").strip()
    if not title.startswith("postgres: "):
        return None
    title = title.removeprefix("postgres: ")
    for known in TITLES:
        # A cluster_name, when set, comes first: "postgres: main: checkpointer".
        if title.startswith(known) or title.partition(": ")[2].startswith(known):
            return known
    return None


def vacuum_task(query: str) -> str | None:
    """``VACUUM chunks`` from an autovacuum worker's ``autovacuum: VACUUM public.chunks`` (partitions'
    numbers as N, so a table's partitions add up)."""
    match = re.match(r"autovacuum: (VACUUM ANALYZE|VACUUM|ANALYZE|BRIN summarize) (?:\w+\.)?(\S+)", query)
    if match is None:
        return None
    return f"{match.group(1)} {re.sub(r'[0-9]+', 'N', match.group(2))}"


def group(backend_type: str) -> str:
    """The report's column for a backend type."""
    if backend_type.startswith("autovacuum"):
        return "autovacuum"
    return backend_type


# -- statements ----------------------------------------------------------------
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
# Parameters, and the constants pg_stat_statements shows as $n: strings, numbers, NULL, true, false.
_CONSTANT = re.compile(
    r"%\(\w+\)s|%s|\$\d+|'(?:[^']|'')*'|(?<![\w$])-?\d+(?:\.\d+)?\b|\b(?:null|true|false)\b", re.IGNORECASE
)


def normalize(sql: str) -> str:
    """A statement's text as pg_stat_statements and our query files both reduce to: no comments,
    every parameter and constant one ``?``, no spaces."""
    return re.sub(r"\s+", "", _CONSTANT.sub("?", _COMMENT.sub(" ", sql))).replace("%%", "%").lower()


def named_queries() -> dict[str, str]:
    """normalized text -> name, for every statement under sql/queries."""
    from core.queries import all_queries

    return {normalize(query.text): name for name, query in all_queries().items()}


KINDS = (
    ("claim", re.compile(r"^(?!webhook).*claim")),
    ("finish", re.compile(r"^(?!webhook).*finish")),
    ("upload COPY", re.compile(r"_copy$|^copy\b", re.IGNORECASE)),
    (
        "housekeeping",
        re.compile(
            r"^(runners_|webhook_|chunks_(renew|release|return|sweep|delete|analyze)|batches_(expired|deleted|reap|"
            r"mark)|batch_results_partitions|vacuum|analyze|select pg_(try_)?advisory)",
            re.IGNORECASE,
        ),
    ),
)


def kind(name: str) -> str:
    for label, pattern in KINDS:
        if pattern.search(name):
            return label
    return "other"


@dataclass
class Statement:
    name: str  # its sql/queries name, or the start of its text
    calls: int
    rows: int
    exec_seconds: float
    plan_seconds: float

    @property
    def kind(self) -> str:
        return kind(self.name)


def _label(text: str, names: dict[str, str]) -> str:
    name = names.get(normalize(text))
    return name if name is not None else " ".join(text.split())[:60]


# -- the breakdown -------------------------------------------------------------
@dataclass
class CpuBreakdown:
    """CPU seconds of PostgreSQL's processes over one lap."""

    seconds: dict[str, float]  # by backend type, plus POSTMASTER and ENDED
    clients: dict[str, float]  # client backends by application_name
    total: float  # every server process, exactly (the probe's session left out)
    probe: float  # the probe's own session
    statements: list[Statement] | None = None  # None: pg_stat_statements not loaded
    vacuum: dict[str, float] = field(default_factory=dict)  # autovacuum workers' sampled CPU by table

    def columns(self) -> dict[str, float]:
        """Seconds per report column: SHOWN's, postmaster, other, ended between samples."""
        out = dict.fromkeys(SHOWN.values(), 0.0)
        out.update({POSTMASTER: 0.0, "other": 0.0, ENDED: 0.0})
        for backend_type, seconds in self.seconds.items():
            column = group(backend_type)
            if column in SHOWN:
                out[SHOWN[column]] += seconds
            elif column in (POSTMASTER, ENDED):
                out[column] += seconds
            else:
                out["other"] += seconds
        return out

    def by_kind(self) -> dict[str, tuple[float, int]]:
        """Statement kind -> (execution seconds, calls)."""
        out: dict[str, tuple[float, int]] = {}
        for s in self.statements or []:
            seconds, calls = out.get(s.kind, (0.0, 0))
            out[s.kind] = (seconds + s.exec_seconds, calls + s.calls)
        return out


@dataclass
class _Proc:
    backend_type: str | None
    app: str
    mark: float  # CPU at the last lap (0 for a process born since)
    last: float  # CPU at the last sample
    title: str = ""
    lookups: int = 0
    task: str = "(not seen)"  # an autovacuum worker's table


@dataclass
class PgCpuProbe:
    url: str
    interval: float = 0.1
    _procs: dict[tuple[int, int], _Proc] = field(default_factory=dict)

    def start(self) -> None:
        self._conn = psycopg.connect(self.url, autocommit=True, application_name="bench-pgcpu")
        self._own = self._conn.execute(f"SELECT pg_backend_pid() {MARK}").fetchone()[0]
        own = read_stat(self._own)
        assert own is not None, "the probe must run on the server's machine"
        self.postmaster = own.ppid
        self.loaded = bool(
            self._conn.execute(
                f"SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements' {MARK}"
            ).fetchone()[0]
        )
        self._names = named_queries() if self.loaded else {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        with self._lock:
            self._procs.clear()
            self._vacuum: dict[str, float] = {}
            self._sample(first=True)
            self._total = self._exact()
            self._statements = self._read_statements()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def lap(self) -> CpuBreakdown:
        """The breakdown since start() or the previous lap."""
        with self._lock:
            self._sample()
            total = self._exact()
            seconds: dict[str, float] = {POSTMASTER: self._pm.cpu - self._pm_mark}
            clients: dict[str, float] = {}
            probe = 0.0
            live = set(self._live)
            for key, proc in list(self._procs.items()):
                used = proc.last - proc.mark
                if key[0] == self._own:
                    probe += used
                else:
                    backend_type = proc.backend_type or title_type(proc.title) or "other"
                    seconds[backend_type] = seconds.get(backend_type, 0.0) + used
                    if backend_type == "client backend":
                        clients[proc.app] = clients.get(proc.app, 0.0) + used
                if key in live:
                    proc.mark = proc.last
                else:
                    del self._procs[key]
            self._pm_mark = self._pm.cpu
            whole, self._total = total - self._total - probe, total
            seconds[ENDED] = whole - sum(seconds.values())
            statements = self._read_statements()
            diff = self._diff(self._statements, statements) if self.loaded else None
            self._statements = statements
            vacuum, self._vacuum = self._vacuum, {}
        return CpuBreakdown(seconds, clients, whole, probe, diff, vacuum)

    def stop(self) -> CpuBreakdown:
        self._done.set()
        self._thread.join()
        try:
            return self.lap()
        finally:
            self._conn.close()

    # -- sampling --------------------------------------------------------------
    def _run(self) -> None:
        while not self._done.wait(self.interval):
            with self._lock:
                self._sample()

    def _sample(self, first: bool = False) -> None:
        pm = read_stat(self.postmaster)
        assert pm is not None, "the postmaster has gone"
        self._pm = pm
        if first:
            self._pm_mark = pm.cpu
        self._live: dict[tuple[int, int], ProcStat] = {}
        used: dict[tuple[int, int], float] = {}
        unknown = False
        for pid in children(self.postmaster):
            stat = read_stat(pid)
            if stat is None:
                continue
            key = (pid, stat.started)
            self._live[key] = stat
            proc = self._procs.get(key)
            if proc is None:  # at start() from now on; else born since the last sample
                base = stat.cpu if first else 0.0
                proc = self._procs[key] = _Proc(None, "", base, base)
            used[key], proc.last = stat.cpu - proc.last, stat.cpu
            unknown |= proc.backend_type is None
        if unknown:
            self._classify()
        workers = [k for k in self._live if self._procs[k].backend_type == "autovacuum worker"]
        if workers:
            self._vacuum_tasks(workers, used)

    def _vacuum_tasks(self, workers: list[tuple[int, int]], used: dict[tuple[int, int], float]) -> None:
        """Each autovacuum worker's CPU since the last sample, to the table it works on now."""
        tasks = dict(
            self._conn.execute(
                f"SELECT pid, query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' {MARK}"
            ).fetchall()
        )
        for key in workers:
            proc = self._procs[key]
            proc.task = vacuum_task(tasks.get(key[0]) or "") or proc.task
            self._vacuum[proc.task] = self._vacuum.get(proc.task, 0.0) + used[key]

    def _classify(self) -> None:
        activity = {
            pid: (backend_type, app or "")
            for pid, backend_type, app in self._conn.execute(
                f"SELECT pid, backend_type, application_name FROM pg_stat_activity {MARK}"
            )
        }
        for (pid, _), proc in self._procs.items():
            if proc.backend_type is not None:
                continue
            if pid in activity:
                proc.backend_type, proc.app = activity[pid]
                continue
            # Not (yet) in the view: a process just forked, or one the view never shows (the logger).
            # Its title, once it has its own, says which; after three tries it is "other".
            with contextlib.suppress(OSError):
                proc.title = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            proc.lookups += 1
            if title_type(proc.title) or proc.lookups >= 3:
                proc.backend_type = title_type(proc.title) or "other"

    def _exact(self) -> float:
        """CPU seconds of the server so far: the postmaster's, its reaped children's, every live child's."""
        return self._pm.cpu + self._pm.reaped + sum(s.cpu + s.reaped for s in self._live.values())

    # -- statements ------------------------------------------------------------
    def _read_statements(self) -> dict[tuple, tuple[str, int, int, float, float]]:
        if not self.loaded:
            return {}
        rows = self._conn.execute(
            "SELECT userid, dbid, queryid, query, calls, rows, total_exec_time, total_plan_time "
            f"FROM pg_stat_statements {MARK}"
        ).fetchall()
        return {
            (u, d, q): (text, c, r, e / 1e3, p / 1e3)
            for u, d, q, text, c, r, e, p in rows
            if MARK not in text
        }

    def _diff(self, before: dict, after: dict) -> list[Statement]:
        merged: dict[str, Statement] = {}
        for key, (text, calls, rows, exec_s, plan_s) in after.items():
            _, c0, r0, e0, p0 = before.get(key, (text, 0, 0, 0.0, 0.0))
            if calls == c0:
                continue
            name = _label(text, self._names)
            s = merged.setdefault(name, Statement(name, 0, 0, 0.0, 0.0))
            s.calls += calls - c0
            s.rows += rows - r0
            s.exec_seconds += exec_s - e0
            s.plan_seconds += plan_s - p0
        return sorted(merged.values(), key=lambda s: s.exec_seconds, reverse=True)


# -- a cluster with pg_stat_statements -----------------------------------------
def statements_available(bindir: Path) -> bool:
    """Whether the server in ``bindir`` ships pg_stat_statements (library and extension files)."""
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    out = subprocess.run([str(pg_config), "--pkglibdir", "--sharedir"], capture_output=True, text=True)
    if out.returncode != 0:
        return False
    lib, share = out.stdout.split("\n")[:2]
    return (Path(lib) / "pg_stat_statements.so").exists() and (
        Path(share) / "extension" / "pg_stat_statements.control"
    ).exists()


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """``bench.service.cluster``, with pg_stat_statements loaded and created when the binaries ship it."""
    from core.embedded_postgres import EmbeddedPostgres
    from core.migrations import migrate

    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = EmbeddedPostgres(workdir, port=5432)
    server.init()
    statements = statements_available(server.bindir)
    with (server.datadir / "pgdata" / "postgresql.auto.conf").open("a") as conf:
        # The wheel's server is built without LLVM. One with it (the system's) would JIT-compile the
        # runners' statements, whose estimated costs enable_seqscan = off lifts past jit_above_cost.
        conf.write("jit = off\n")
        if statements:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
    url = server.start()
    try:
        migrate(url)
        if statements:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        yield url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the report ----------------------------------------------------------------
def _us(seconds: float, rows: int) -> str:
    return f"{seconds / rows * 1e6:.1f}"


def _largest(seconds: dict[str, float], rows: int, top: int = 4) -> str:
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    return ", ".join(f"{name or 'unnamed'} {_us(s, rows)}" for name, s in ranked[:top])


def describe(split: CpuBreakdown, rows: int) -> str:
    """µs per row of each column, of the client backends' applications and of the tables autovacuum
    worked on; the sum."""
    columns = split.columns()
    others = sorted(t for t in split.seconds if group(t) not in SHOWN and t not in (POSTMASTER, ENDED))
    detail = {
        "client backends": _largest(split.clients, rows),
        "autovacuum": _largest(split.vacuum, rows),
        "other": ", ".join(others),
    }
    parts = []
    for column, seconds in columns.items():
        if column == "walsender" and not seconds:
            continue
        figure = _us(seconds, rows)
        text = f"{column} **{figure}**" if column == "client backends" else f"{column} {figure}"
        if detail.get(column):
            text += f" ({detail[column]})"
        parts.append(text)
    return ", ".join(parts) + f"; sum **{_us(sum(columns.values()), rows)}** µs per row"


def describe_statements(split: CpuBreakdown, rows: int, top: int = 6) -> str:
    """Execution µs per row by statement kind, the client backends' CPU split alike, the top statements."""
    kinds = split.by_kind()
    executed = sum(seconds for seconds, _ in kinds.values()) or 1.0
    client = split.columns()["client backends"]
    order = ("claim", "finish", "housekeeping", "upload COPY", "other")
    by_kind = ", ".join(
        f"{k} {_us(kinds[k][0], rows)} (≈ {_us(client * kinds[k][0] / executed, rows)} CPU; "
        f"{kinds[k][1]:,} calls)"
        for k in order
        if k in kinds
    )
    tops = "; ".join(
        f"`{s.name}` {_us(s.exec_seconds, rows)} ({s.calls:,} calls, {s.rows:,} rows)"
        for s in (split.statements or [])[:top]
    )
    return (
        f"execution µs per row: {by_kind}; all statements {_us(executed, rows)} of the client backends' "
        f"{_us(client, rows)} µs CPU. Top: {tops}"
    )


def rows(k: dict) -> list[Row]:
    """The benchmark table's rows for ``bench.ceiling.cpu``'s result."""
    n = k["rows"]
    out = []
    for phase, key, figure in (
        ("scoring", "pg_scoring_split", "claims, finishes and housekeeping"),
        ("upload", "pg_upload_split", "the upload"),
    ):
        split: CpuBreakdown = k[key]
        out.append(
            (
                f"where PostgreSQL's CPU goes: {figure}, same batch, µs per row by process type "
                "(`/proc` every 0.1 s, `pg_stat_activity.backend_type`; client backends by "
                "`application_name`, unnamed: the benchmark's status polls; autovacuum by table)",
                f"all of PostgreSQL's processes: {_us(split.total, n)} µs per row (the {phase} figure "
                "of the row above)",
                describe(split, n),
                "breakdown",
            )
        )
        if split.statements is not None:
            out.append(
                (
                    f"statements: {figure}, same batch (pg_stat_statements: execution time per row, "
                    "and the client backends' CPU split in its proportions)",
                    "—",
                    describe_statements(split, n),
                    "breakdown",
                )
            )
    if k["pg_scoring_split"].statements is None:
        out.append(
            (
                "statements (pg_stat_statements)",
                "—",
                "not available: this server's binaries do not ship pg_stat_statements "
                "(`PG_BINDIR=/usr/lib/postgresql/15/bin` runs one that does)",
                "breakdown",
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    from bench import ceiling

    parser = argparse.ArgumentParser(prog="python -m bench.pgcpu")
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    k = ceiling.cpu(args.rows)
    print(
        f"{k['rows']:,} review rows, {k['cores']} runners: PostgreSQL {k['pg_upload_us']:.1f} µs per row "
        f"for the upload, {k['pg_scoring_us']:.1f} µs for claims, finishes and housekeeping; "
        f"runners {k['runner_us']:.0f} µs ({k['ratio']:.1f} : 1)"
    )
    for figure, baseline, result, _ in rows(k):
        print(f"\n{figure}\n  {baseline}\n  {result}")


if __name__ == "__main__":
    main()
