"""The queue's ceiling and what one PostgreSQL core can feed.

* ``ceiling``: upload → completed with a scorer that costs nothing
  (``tests.scorers:constant``, plugged in the way tests plug in scorers) and
  1, 2 and 4 runners, against PostgreSQL alone moving the same rows in the
  same run: ``COPY`` into an inputs table and one ``INSERT … SELECT`` of the
  narrow result rows into a results table (each its own transaction, tables
  built ``LIKE`` ours, indexes and checks included): what the pipeline writes,
  with no queue around it.
* ``cpu``: a large batch with the real scorer and runners = cores: the CPU
  time of PostgreSQL's processes (from ``/proc``: the postmaster's own and
  its reaped children's, plus every live child's) per row during the upload
  and during the scoring (claims, finishes, housekeeping, autovacuum), next
  to the runners' CPU per row, and the WAL each phase wrote. runner CPU :
  PostgreSQL CPU is how many runner cores one PostgreSQL core can feed. ``bench.pgcpu`` splits each phase's
  PostgreSQL CPU by process type (and by statement where pg_stat_statements
  is loaded); its sampling session is left out of both figures.

``python -m bench.ceiling [--rows N]`` runs both alone.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench import Row, pgcpu
from bench.data import texts as make_texts
from bench.e2e import _csv
from bench.service import cluster, runners

TICK = os.sysconf("SC_CLK_TCK")
CONSTANT = "tests.scorers:constant"


# -- CPU from /proc ------------------------------------------------------------
def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_cpu(pid: int, reaped: bool = True) -> float:
    """CPU seconds of a process (user + system), with its reaped children's when ``reaped``."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def postmaster_pid(url: str) -> int:
    socket_dir = Path(conninfo_to_dict(url)["host"])
    return int((socket_dir.parent / "pgdata" / "postmaster.pid").read_text().split()[0])


def server_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL server: every process, living or gone."""
    master = postmaster_pid(url)
    total = process_cpu(master)
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            total += process_cpu(int(child))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile: now counted in the postmaster's reaped time
    return total


# -- one batch, timed ----------------------------------------------------------
def timed_batch(
    url: str,
    body: bytes,
    count: int,
    runner_url: str | None = None,
    probe: pgcpu.PgCpuProbe | None = None,
    **env: str,
) -> dict:
    """Upload ``body`` with ``count`` runners waiting (connected to ``runner_url`` if given); seconds and
    CPU seconds of each phase. With a ``probe``, also each phase's ``pgcpu.CpuBreakdown``
    (``pg_upload_split``, ``pg_scoring_split``), and the PostgreSQL figures leave its session out."""
    from webapp import create_app

    app = create_app({"database_url": url, "migrate_on_start": False})
    try:
        with (
            runners(runner_url or url, count, POLL_SECONDS="0.2", **env) as procs,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM runners").fetchone()[0] < count:
                assert time.monotonic() < deadline, "runners did not start"
                time.sleep(0.05)
            runner_cpu = sum(process_cpu(p.pid, reaped=False) for p in procs)
            if probe is not None:
                probe.start()
            wal = "SELECT pg_current_wal_insert_lsn()"
            wal0 = conn.execute(wal).fetchone()[0]
            pg0, started = server_cpu(url), time.perf_counter()
            answer = app.test_client().post("/batch/upload", data=body, content_type="text/csv").get_json()
            pg1, uploaded = server_cpu(url), time.perf_counter()
            wal1 = conn.execute(wal).fetchone()[0]
            upload_split = probe.lap() if probe is not None else None
            status = "SELECT status FROM batches WHERE public_id = %s"
            while conn.execute(status, (answer["batch_id"],)).fetchone()[0] == "processing":
                time.sleep(0.02)
            pg2, done = server_cpu(url), time.perf_counter()
            wal2 = conn.execute(wal).fetchone()[0]
            scoring_split = probe.stop() if probe is not None else None
            runner_cpu = sum(process_cpu(p.pid, reaped=False) for p in procs) - runner_cpu
            wal_bytes = conn.execute(
                "SELECT %s::pg_lsn - %s::pg_lsn, %s::pg_lsn - %s::pg_lsn", (wal1, wal0, wal2, wal1)
            ).fetchone()
        # Gone at once, leaving no dead rows to the next run's autovacuum; once the runners have
        # stopped, as the one that completed the batch may still be keeping its summary.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE batch_inputs, batch_results, batch_row_errors, batch_result_keys, "
                "result_checkpoints, chunks, batches CASCADE"
            )
        result = {
            "seconds": done - started,
            "upload_seconds": uploaded - started,
            "pg_upload_cpu": pg1 - pg0,
            "pg_scoring_cpu": pg2 - pg1,
            "runner_cpu": runner_cpu,
            "wal_upload_bytes": int(wal_bytes[0]),
            "wal_scoring_bytes": int(wal_bytes[1]),
        }
        if upload_split is not None and scoring_split is not None:
            # The probe's session is not PostgreSQL's work for the batch.
            result["pg_upload_cpu"] -= upload_split.probe
            result["pg_scoring_cpu"] -= scoring_split.probe
            result.update(pg_upload_split=upload_split, pg_scoring_split=scoring_split)
        return result
    finally:
        app.extensions["db_pool"].close()


# -- PostgreSQL alone ----------------------------------------------------------
def _inputs_csv(items: list[str]) -> bytes:
    """The rows as batch_inputs holds them (batch_id, row_number, client_id, text, line_number), CSV."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows((1, n, f"r{n - 1}", text, n + 1) for n, text in enumerate(items, start=1))
    return buffer.getvalue().encode()


def pg_alone(url: str, data: bytes) -> float:
    """Seconds for PostgreSQL alone to write what the pipeline writes: COPY into the inputs, then one
    INSERT … SELECT of the narrow result rows."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS alone_inputs, alone_results;"
            "CREATE TABLE alone_inputs (LIKE batch_inputs INCLUDING ALL);"
            "CREATE TABLE alone_results (LIKE batch_results INCLUDING ALL);"
        )
        conn.commit()
        started = time.perf_counter()
        columns = "batch_id, row_number, client_id, text, line_number"
        with conn.cursor().copy(f"COPY alone_inputs ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, len(data), 64 * 1024):
                copy.write(data[start : start + 64 * 1024])
        conn.commit()
        conn.execute(
            "INSERT INTO alone_results (batch_id, row_number, compound, pos, neu, neg) "
            "SELECT batch_id, row_number, 0, 0, 1, 0 FROM alone_inputs"
        )
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE alone_inputs, alone_results")
        conn.commit()
        return elapsed


def ceiling(rows: int, repeat: int = 3) -> dict:
    items = make_texts("review", rows, seed=11)
    body, inputs = _csv(items), _inputs_csv(items)
    result: dict = {"rows": rows, "pipeline": {}, "upload_share": {}}
    with cluster() as url:
        result["alone"] = rows / statistics.median(pg_alone(url, inputs) for _ in range(repeat))
        for count in (1, 2, 4):
            runs = [timed_batch(url, body, count, SCORER=CONSTANT) for _ in range(repeat)]
            result["pipeline"][count] = rows / statistics.median(r["seconds"] for r in runs)
            result["upload_share"][count] = statistics.median(
                r["upload_seconds"] / r["seconds"] for r in runs
            )
    return result


def cpu(rows: int) -> dict:
    """PostgreSQL's and the runners' CPU per row for one ``rows``-row batch, real scorer, runners = cores;
    PostgreSQL's split by process type (``bench.pgcpu``) in ``pg_upload_split`` and ``pg_scoring_split``."""
    cores = os.cpu_count() or 1
    body = _csv(make_texts("review", rows, seed=12))
    with pgcpu.cluster() as url:
        run = timed_batch(url, body, cores, probe=pgcpu.PgCpuProbe(url))
    pg = run["pg_upload_cpu"] + run["pg_scoring_cpu"]
    return {
        "rows": rows,
        "cores": cores,
        "pg_upload_us": run["pg_upload_cpu"] / rows * 1e6,
        "pg_scoring_us": run["pg_scoring_cpu"] / rows * 1e6,
        "runner_us": run["runner_cpu"] / rows * 1e6,
        "ratio": run["runner_cpu"] / pg,
        "ratio_scoring": run["runner_cpu"] / run["pg_scoring_cpu"],
        "wal_per_row": (run["wal_upload_bytes"] + run["wal_scoring_bytes"]) / rows,
        "wal_upload_per_row": run["wal_upload_bytes"] / rows,
        "pg_upload_split": run["pg_upload_split"],
        "pg_scoring_split": run["pg_scoring_split"],
    }


def ceiling_rows(c: dict) -> list[Row]:
    """``make bench``'s row for :func:`ceiling`."""
    alone, pipe = c["alone"], c["pipeline"]
    return [
        (
            f"queue ceiling: upload → completed, {c['rows']:,} review rows, constant scorer "
            "(`tests.scorers:constant`), 1 / 2 / 4 runners",
            f"PostgreSQL alone writing the same rows: COPY into inputs, one INSERT … SELECT of the "
            f"narrow results: {alone:,.0f} rows/s",
            " / ".join(f"**{pipe[n] / alone:.2f}×** ({pipe[n]:,.0f} rows/s)" for n in (1, 2, 4))
            + "; the upload was "
            + " / ".join(f"{c['upload_share'][n]:.0%}" for n in (1, 2, 4))
            + " of the time",
            "≥ 0.75× (2 runners)",
        )
    ]


def cpu_rows(k: dict) -> list[Row]:
    """``make bench``'s rows for :func:`cpu`: CPU per row, WAL per row, and where PostgreSQL's CPU goes."""
    return [
        (
            f"runner CPU : PostgreSQL CPU, {k['rows']:,} review rows, {k['cores']} runners, real scorer",
            f"PostgreSQL's processes (/proc): {k['pg_upload_us']:.1f} µs per row for the upload, "
            f"{k['pg_scoring_us']:.1f} µs per row for claims, finishes and housekeeping",
            f"runners {k['runner_us']:.0f} µs per row: **{k['ratio']:.1f} : 1** "
            f"({k['ratio_scoring']:.1f} : 1 counting the scoring phase alone); PostgreSQL's scoring "
            f"phase **{k['pg_scoring_us']:.1f} µs per row**",
            "≥ 10 : 1; scoring phase ≤ 6 µs per row",
        ),
        (
            f"WAL per row, the whole pipeline (upload → completed), {k['rows']:,} review rows",
            "pg_current_wal_insert_lsn() before the upload and after the batch completed",
            f"**{k['wal_per_row']:,.0f} bytes** per row "
            f"({k['wal_upload_per_row']:,.0f} of them by the upload)",
            "≤ 700 bytes",
        ),
        *pgcpu.rows(k),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cpu-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(ceiling(args.rows, args.repeat))
    print(cpu(args.cpu_rows))


if __name__ == "__main__":
    main()
