"""The PostgreSQL CPU probe's parsing and naming (bench/pgcpu.py): /proc stat lines whose command
name holds spaces and parentheses, process titles, statement texts as pg_stat_statements shows them,
and the report's columns; no database, no timing assertions."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench import pgcpu

TICK = os.sysconf("SC_CLK_TCK")


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    # Fields 3 on: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    rest = f"S {ppid} 1 1 0 -1 4194304 10 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 4242 1000 50"
    return f"{pid} ({comm}) {rest}\n"


def test_stat_line_with_spaces_and_parentheses_in_the_command_name() -> None:
    for comm in ("postgres", "post gres", "a) b (c", ")) x ((", "S 1 2 3"):
        stat = pgcpu.parse_stat(_stat_line(321, comm, 77, 5 * TICK, 3 * TICK, 2 * TICK, TICK))
        assert (stat.pid, stat.ppid, stat.started) == (321, 77, 4242), comm
        assert stat.cpu == 8.0
        assert stat.reaped == 3.0


def test_own_process_stat_reads() -> None:
    stat = pgcpu.read_stat(os.getpid())
    assert stat is not None and stat.pid == os.getpid() and stat.ppid == os.getppid()
    assert pgcpu.read_stat(2**22 + 1) is None  # above pid_max: no such process


def test_process_titles() -> None:
    title = pgcpu.title_type
    assert title("postgres: checkpointer ") == "checkpointer"
    assert title("postgres: autovacuum worker sentiment\0") == "autovacuum worker"
    assert title("postgres: main: background writer ") == "background writer"  # with a cluster_name
    assert title("postgres: walwriter ") == "walwriter"
    assert title("postgres: postgres sentiment [local] idle") is None  # a client backend: the view says so
    assert title("/usr/lib/postgresql/15/bin/postgres\0-D\0/data\0") is None  # forked, not yet titled


def _as_shown(sql: str) -> str:
    """As pg_stat_statements shows a statement psycopg sent: parameters as $1, $2, ..., comments kept."""
    parts = re.split(r"%\(\w+\)s", sql)
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


def test_statement_texts_match_their_query_files() -> None:
    from core.queries import all_queries

    queries = all_queries()
    names = pgcpu.named_queries()
    for name, query in queries.items():
        matched = names[pgcpu.normalize(_as_shown(query.text))]
        assert matched == name or pgcpu.normalize(queries[matched].text) == pgcpu.normalize(query.text)
    assert pgcpu.normalize("SELECT 'a''b', -1, 2.5, NULL, true /* x */ -- y\n FROM t") == pgcpu.normalize(
        "select $1,$2,$3,$4,$5 from t"
    )


def test_vacuum_tasks() -> None:
    assert pgcpu.vacuum_task("autovacuum: VACUUM public.chunks") == "VACUUM chunks"
    assert (
        pgcpu.vacuum_task("autovacuum: VACUUM ANALYZE public.batch_results_p17")
        == "VACUUM ANALYZE batch_results_pN"
    )
    assert pgcpu.vacuum_task("autovacuum: ANALYZE batch_rows") == "ANALYZE batch_rows"
    assert pgcpu.vacuum_task("autovacuum: VACUUM pg_toast.pg_toast_2619 (to prevent wraparound)") == (
        "VACUUM pg_toast_N"
    )
    assert pgcpu.vacuum_task("") is None


def test_statement_kinds() -> None:
    assert pgcpu.kind("chunks_claim") == "claim"
    assert pgcpu.kind("webhook_events_claim") == "housekeeping"
    assert pgcpu.kind("chunks_finish") == "finish"
    assert pgcpu.kind("batch_rows_copy") == "upload COPY"
    assert pgcpu.kind("batch_inputs_copy") == "upload COPY"
    assert pgcpu.kind("COPY batch_rows (batch_id) FROM STDIN") == "upload COPY"
    assert pgcpu.kind("runners_heartbeat") == "housekeeping"
    assert pgcpu.kind("SELECT pg_advisory_unlock($1)") == "housekeeping"
    assert pgcpu.kind("SELECT status FROM batches WHERE public_id = $1") == "other"


def test_breakdown_columns_sum_every_process() -> None:
    split = pgcpu.CpuBreakdown(
        seconds={
            "client backend": 2.5,
            "autovacuum worker": 1.0,
            "autovacuum launcher": 1.0,
            "checkpointer": 0.25,
            "walwriter": 0.25,
            "logical replication launcher": 0.375,
            pgcpu.POSTMASTER: 0.125,
            pgcpu.ENDED: 0.5,
        },
        clients={"sentiment-runner": 2.0, "": 0.5},
        total=6.0,
        probe=0.1,
        vacuum={"VACUUM chunks": 1.0, "ANALYZE batch_results_pN": 0.5},
    )
    columns = split.columns()
    assert columns["client backends"] == 2.5 and columns["autovacuum"] == 2.0 and columns["other"] == 0.375
    assert sum(columns.values()) == split.total
    text = pgcpu.describe(split, 1_000_000)
    assert "client backends **2.5** (sentiment-runner 2.0, unnamed 0.5)" in text
    assert "autovacuum 2.0 (VACUUM chunks 1.0, ANALYZE batch_results_pN 0.5)" in text
    assert "(logical replication launcher)" in text and text.endswith("sum **6.0** µs per row")
    assert "walsender" not in text  # none here


def test_statements_available_needs_the_library() -> None:
    assert not pgcpu.statements_available(Path("/nonexistent"))
