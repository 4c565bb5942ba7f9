"""``make soak``: many big batches back to back, to see whether the service decays.

Not part of ``make test`` or ``make bench``: it runs for 15-25 minutes at full
size (``python -m bench.soak``: 50 batches of 100,000 review rows, 2 runners).
``--batches``/``--rows`` shrink it for a quick look.

What it does: a fresh PostgreSQL with default settings (autovacuum included,
nothing tuned per table), gunicorn and ``--runners`` runner processes; then
uploads one batch over HTTP as soon as the previous one completed. Results are
kept for the last ``--keep`` batches (10): each older batch is deleted through
``DELETE /batch/<id>``, so the runners reap its rows in bounded steps while they
score the next one, as ``RESULTS_TTL`` would have them do for months. A
sampler reads every table's and index's size and the dead tuples of the
tables every ``--sample`` seconds (``pg_stat_user_tables``).

What it prints (and writes to ``bench-results/soak.md`` and ``soak.json``):

* throughput (upload start to ``completed``, rows/s) of the last 5 batches
  against the first 5;
* claim and finish latency, p50 and p99 over the rounds of the first 5 and of
  the last 5 batches, timed inside the runners (``claim_ms`` and
  ``commit_ms`` of their JSON round log lines: the ``chunks_claim`` and
  ``chunks_finish`` round trips as the runner sees them, the Python around
  them included);
* every table's and index's size at the start (after the first batch), at
  the end and at its peak; the dead tuples of the inputs, chunks and results
  likewise; how big the inputs (the kept batches' rows, written once) and the
  queue (near empty, if vacuum keeps up) are right after each batch
  completes; and how often autovacuum ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
import requests

from bench.data import write_csv
from bench.probe import Probe
from bench.service import cluster, gunicorn, runners, worker_pids

REPO = Path(__file__).resolve().parents[1]
TABLES = ("batch_inputs", "chunks", "batch_results", "batch_row_errors", "batch_result_keys", "batches")
DEAD_TABLES = ("batch_inputs", "chunks", "batch_results")
LABELS = {"batch_inputs": "inputs", "chunks": "chunks", "batch_results": "results"}

# Partitions (batch_inputs, batch_results, batch_row_errors and batch_result_keys are partitioned by
# batch id ranges, migrations 0012 and 0019) count as their root table, and partitions' indexes as
# the root's index.
SIZES = """
SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
       min(c.relkind) AS kind,
       coalesce(pg_partition_root(t.oid), t.oid)::regclass::text AS table_name,
       sum(pg_relation_size(c.oid))::bigint AS bytes, sum(pg_table_size(c.oid))::bigint AS table_bytes
FROM pg_class c
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
  AND coalesce(pg_partition_root(t.oid), t.oid)::regclass::text = ANY(%(tables)s)
GROUP BY 1, 3
"""
STATS = """
SELECT coalesce(pg_partition_root(s.relid), s.relid)::regclass::text AS relname,
       sum(n_live_tup)::bigint, sum(n_dead_tup)::bigint, sum(autovacuum_count)::bigint,
       sum(autoanalyze_count)::bigint
FROM pg_stat_user_tables AS s
WHERE coalesce(pg_partition_root(s.relid), s.relid)::regclass::text = ANY(%(tables)s)
GROUP BY 1
"""


#: ``--tune``: what a migration would set per table (ALTER TABLE ... SET), and one server setting
#: (per-table settings cannot change how often autovacuum looks: autovacuum_naptime is global).
TUNING = {
    "chunks": {
        "autovacuum_vacuum_scale_factor": "0",
        "autovacuum_vacuum_threshold": "2000",
        "autovacuum_vacuum_cost_delay": "0",
    },
}
# (Migration 0013 sets these in every database now; the other big tables are partitioned (0012,
# 0019), and a partitioned table takes no autovacuum settings.)
SERVER_TUNING = {"autovacuum_naptime": "10s"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tune(conn: psycopg.Connection) -> None:
    for table, options in TUNING.items():
        conn.execute(f"ALTER TABLE {table} SET ({', '.join(f'{k} = {v}' for k, v in options.items())})")
    for name, value in SERVER_TUNING.items():
        conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    conn.execute("SELECT pg_reload_conf()")


def busy_ticks() -> int:
    """CPU time spent by the whole machine (every core), in clock ticks."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return user + nice + system + irq + softirq + steal


def process_ticks(pids: list[int]) -> dict[int, int]:
    """CPU time of each of these processes (user + system, all threads), in clock ticks."""
    ticks = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def spent(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two readings by the processes alive at the second (one that
    started meanwhile counts from 0; one that ended meanwhile is missed)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def snapshot(conn: psycopg.Connection) -> dict:
    """Sizes of every table (with its TOAST and indexes) and index, and the tables' tuple counts."""
    relations = {}
    for name, kind, table, size, heap_and_toast in conn.execute(SIZES, {"tables": list(TABLES)}):
        relations[name] = {
            "kind": "table" if kind == "r" else "index",
            "table": table,
            "bytes": heap_and_toast if kind == "r" else size,
        }
    stats = {
        name: {"live": live, "dead": dead, "autovacuums": vacuums, "autoanalyzes": analyzes}
        for name, live, dead, vacuums, analyzes in conn.execute(STATS, {"tables": list(TABLES)})
    }
    return {"at": time.monotonic(), "relations": relations, "stats": stats}


class Sampler(Probe):
    """Snapshots every ``interval`` seconds on its own connection; keeps the peaks."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(interval, url)
        self.peak_bytes: dict[str, int] = {}
        self.peak_dead: dict[str, int] = {}
        self.samples = 0

    def take(self, conn: psycopg.Connection) -> dict:
        snap = snapshot(conn)
        for name, relation in snap["relations"].items():
            self.peak_bytes[name] = max(self.peak_bytes.get(name, 0), relation["bytes"])
        for name, stats in snap["stats"].items():
            self.peak_dead[name] = max(self.peak_dead.get(name, 0), stats["dead"])
        self.samples += 1
        return snap

    sample = take


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p50, p99) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def round_latencies(log: Path) -> dict[int, dict[str, list[float]]]:
    """The runners' claim and commit times per round, by internal batch id."""
    rounds: dict[int, dict[str, list[float]]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if "claim_ms" in entry and "batch" in entry:
            per_batch = rounds.setdefault(entry["batch"], {"claim_ms": [], "commit_ms": []})
            per_batch["claim_ms"].append(entry["claim_ms"])
            per_batch["commit_ms"].append(entry["commit_ms"])
    return rounds


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def run(batches: int, rows: int, runner_count: int, keep: int, interval: float, tuned: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        return _run(workdir, batches, rows, runner_count, keep, interval, tuned)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    workdir: Path, batches: int, rows: int, runner_count: int, keep: int, interval: float, tuned: bool
) -> dict:
    body = write_csv(workdir / f"review-{rows}.csv", "review", rows).read_bytes()
    log = workdir / "runners.log"
    done: list[dict] = []
    between: list[dict] = []  # inputs and queue right after each batch completed
    with cluster() as url, psycopg.connect(url, autocommit=True) as conn:
        if tuned:
            tune(conn)
        stat = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
        postmaster = int(stat.rsplit(")", 1)[1].split()[1])
        with (
            gunicorn(url) as (base, web),
            runners(url, runner_count, log, POLL_SECONDS="0.2") as procs,
            Sampler(url, interval) as sampler,
        ):
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM runners").fetchone()[0] < runner_count:
                assert time.monotonic() < deadline, "runners did not start"
                time.sleep(0.05)

            def ours() -> dict[str, dict[int, int]]:
                """CPU ticks of this run's processes by group."""
                return {
                    "runners": process_ticks([proc.pid for proc in procs]),
                    "postgres": process_ticks([postmaster, *children(postmaster)]),
                    "web": process_ticks([web, *worker_pids(web)]),
                    "bench": process_ticks([os.getpid()]),
                }

            session = requests.Session()
            before = sampler.take(conn)
            first = None
            for index in range(batches):
                started, machine, own = time.perf_counter(), busy_ticks(), ours()
                wal_at = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                answer = session.post(
                    f"{base}/batch/upload", data=body, headers={"Content-Type": "text/csv"}, timeout=600
                )
                assert answer.status_code == 202, answer.text
                public_id = answer.json()["batch_id"]
                while True:
                    status, internal = conn.execute(
                        "SELECT status, id FROM batches WHERE public_id = %s", (public_id,)
                    ).fetchone()
                    if status != "processing":
                        break
                    time.sleep(0.02)
                elapsed = time.perf_counter() - started
                # CPU seconds per group, and other work on the machine meanwhile, in cores (a process
                # of ours that ended during the batch, such as an autovacuum worker, counts as other
                # work: a small overestimate).
                now = ours()
                wal = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (str(wal_at),)).fetchone()[0]
                cpu = {group: spent(own[group], now[group]) for group in own}
                other = max(0.0, (busy_ticks() - machine) / CLOCK_TICKS - sum(cpu.values())) / elapsed
                assert status == "completed", status
                done.append(
                    {
                        "public_id": public_id,
                        "id": internal,
                        "seconds": elapsed,
                        "rows_per_s": rows / elapsed,
                        "other_cores": other,
                        "cpu_seconds": cpu,
                        "wal_bytes": int(wal),
                    }
                )
                snap = sampler.take(conn)
                # Rows counted, not PostgreSQL's estimate (its statistics lag by a second or more).
                between.append(
                    {
                        name: {
                            "bytes": snap["relations"][name]["bytes"],
                            "live": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0],
                            "dead": snap["stats"][name]["dead"],
                        }
                        for name in ("batch_inputs", "chunks")
                    }
                )
                if first is None:
                    first = snap
                if index >= keep:
                    gone = session.delete(f"{base}/batch/{done[index - keep]['public_id']}", timeout=60)
                    assert gone.status_code == 204, gone.text
                print(
                    f"batch {index + 1}/{batches}: {elapsed:.1f} s, {rows / elapsed:,.0f} rows/s, "
                    f"other work {other:.2f} cores; inputs {mib(between[-1]['batch_inputs']['bytes'])} MiB "
                    f"({between[-1]['batch_inputs']['dead']:,} dead), "
                    f"results {mib(snap['relations']['batch_results']['bytes'])} MiB "
                    f"({snap['stats']['batch_results']['dead']:,} dead)",
                    flush=True,
                )
            last = sampler.take(conn)
        vacuum_settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum%%' ORDER BY name"
            ).fetchall()
        )
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    rounds = round_latencies(log)
    window = min(5, max(1, batches // 2))

    def latency(selected: list[dict], key: str) -> dict[str, float]:
        values = [v for batch in selected for v in rounds.get(batch["id"], {}).get(key, [])]
        if not values:
            return {"p50": float("nan"), "p99": float("nan"), "rounds": 0}
        return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "rounds": len(values)}

    head, tail = done[:window], done[-window:]
    return {
        "batches": batches,
        "rows": rows,
        "runners": runner_count,
        "keep": keep,
        "window": window,
        "tuned": tuned,
        "server_version": server_version,
        "autovacuum": vacuum_settings,
        "done": done,
        "between": between,
        "throughput": {
            "first": statistics.mean(b["rows_per_s"] for b in head),
            "last": statistics.mean(b["rows_per_s"] for b in tail),
            "first_other_cores": statistics.mean(b["other_cores"] for b in head),
            "last_other_cores": statistics.mean(b["other_cores"] for b in tail),
            "quiet_batches": [b["rows_per_s"] for b in done if b["other_cores"] < 0.2],
        },
        "wal_bytes_per_row": sum(b["wal_bytes"] for b in done) / (rows * len(done)),
        "cpu_ms_per_1000_rows": {
            group: 1e6 * sum(b["cpu_seconds"][group] for b in done) / (rows * len(done))
            for group in ("runners", "postgres", "web")
        },
        "latency": {
            "claim": {"first": latency(head, "claim_ms"), "last": latency(tail, "claim_ms")},
            "finish": {"first": latency(head, "commit_ms"), "last": latency(tail, "commit_ms")},
        },
        "before": before,
        "start": first,
        "end": last,
        "peak_bytes": sampler.peak_bytes,
        "peak_dead": sampler.peak_dead,
        "samples": sampler.samples,
    }


def table(result: dict) -> str:
    window = result["window"]
    t = result["throughput"]
    lines = [
        f"{result['batches']} batches × {result['rows']:,} review rows back to back, "
        f"{result['runners']} runners, results of the last {result['keep']} batches kept "
        f"(older ones deleted and reaped meanwhile); PostgreSQL {result['server_version']}, "
        + (
            "autovacuum tuned as `--tune` sets it (see bench/soak.py TUNING)."
            if result.get("tuned")
            else "default autovacuum."
        ),
        "",
        "| figure | first batches | last batches | ratio / note |",
        "|---|---|---|---|",
        f"| throughput, mean of {window} batches (upload start → completed) | {t['first']:,.0f} rows/s "
        f"| {t['last']:,.0f} rows/s | **{t['last'] / t['first']:.2f}×** (target ≥ 0.9×) |",
        f"| other work on the machine meanwhile (not this run's processes) "
        f"| {t['first_other_cores']:.2f} cores "
        f"| {t['last_other_cores']:.2f} cores | a shared machine: read the ratio with it |",
    ]
    cpu = result["cpu_ms_per_1000_rows"]
    lines.append(
        f"| CPU per 1,000 rows over the whole run: runners / PostgreSQL / web | "
        f"{cpu['runners']:.0f} / {cpu['postgres']:.0f} / {cpu['web']:.0f} ms | | "
        f"runner : PostgreSQL = **{cpu['runners'] / cpu['postgres']:.1f}** |"
    )
    if "wal_bytes_per_row" in result:  # runs before it was measured lack it
        lines.append(
            f"| WAL per row over the whole run (upload, scoring, reaping the deleted batches) "
            f"| {result['wal_bytes_per_row']:,.0f} bytes | | |"
        )
    done, keep = result["done"], result["keep"]
    # Deleting and reaping old batches starts after batch `keep`: the steady state is compared too.
    steady = done[keep : keep + window] if len(done) >= keep + 2 * window else None
    if steady:
        rate = [statistics.mean(b["rows_per_s"] for b in part) for part in (steady, done[-window:])]
        other = [statistics.mean(b["other_cores"] for b in part) for part in (steady, done[-window:])]
        lines.append(
            f"| throughput once old batches are being deleted: batches {keep + 1}-{keep + window} "
            f"against the last {window} | {rate[0]:,.0f} rows/s ({other[0]:.2f} cores of other work) "
            f"| {rate[1]:,.0f} rows/s ({other[1]:.2f}) | **{rate[1] / rate[0]:.2f}×** |"
        )
    for group in ("runners", "postgres"):
        parts = [("first", done[:window])] + ([("steady", steady)] if steady else [])
        per = {
            name: 1e6 * statistics.mean(b["cpu_seconds"][group] for b in part) / result["rows"]
            for name, part in [*parts, ("last", done[-window:])]
        }
        name = "PostgreSQL" if group == "postgres" else group
        note = f"**{per['last'] / per['first']:.2f}×**"
        if steady:
            span = f"{keep + 1}-{keep + window}"
            note += f"; {per['last'] / per['steady']:.2f}× of batches {span} ({per['steady']:.0f} ms)"
        lines.append(
            f"| CPU per 1,000 rows, {name} (CPU time: less moved by other work than wall time) "
            f"| {per['first']:.0f} ms | {per['last']:.0f} ms | {note} |"
        )
    labels = {
        "claim": "claim wait (the scorer waiting for its next round; the claim overlaps scoring)",
        "finish": "finish (scored → committed, on the runner's database thread)",
    }
    for key, label in labels.items():
        first, last = result["latency"][key]["first"], result["latency"][key]["last"]
        lines.append(
            f"| {label}, p50 / p99 over {first['rounds']:,} and {last['rounds']:,} rounds "
            f"| {first['p50']:.1f} / {first['p99']:.1f} ms | {last['p50']:.1f} / {last['p99']:.1f} ms "
            f"| p99 {last['p99'] / first['p99']:.2f}× |"
        )
    lines += [
        "",
        "| relation (table: heap and TOAST) | start (after batch 1) | end | peak |",
        "|---|---|---|---|",
    ]
    start, end = result["start"]["relations"], result["end"]["relations"]
    ordered = sorted(end, key=lambda n: (TABLES.index(end[n]["table"]), end[n]["kind"] != "table", n))
    for name in ordered:
        label = f"`{name}`" if end[name]["kind"] == "table" else f"&nbsp;&nbsp;index `{name}`"
        lines.append(
            f"| {label} | {mib(start.get(name, {}).get('bytes', 0))} MiB | {mib(end[name]['bytes'])} MiB "
            f"| {mib(result['peak_bytes'].get(name, 0))} MiB |"
        )
    lines += [
        "",
        "| dead tuples | start (after batch 1) | end | peak | autovacuums in the run |",
        "|---|---|---|---|---|",
    ]
    for name in DEAD_TABLES:
        s, e = result["start"]["stats"][name], result["end"]["stats"][name]
        lines.append(
            f"| {LABELS[name]} (`{name}`) | {s['dead']:,} | {e['dead']:,} "
            f"| {result['peak_dead'].get(name, 0):,} "
            f"| {e['autovacuums'] - result['before']['stats'][name]['autovacuums']} |"
        )
    inputs = [b["batch_inputs"] for b in result["between"]]
    queue = [b["chunks"] for b in result["between"]]
    lines += [
        "",
        "Right after each batch completed: the inputs (`batch_inputs`, heap and TOAST: the rows of the "
        f"batches kept) {mib(min(s['bytes'] for s in inputs))}-{mib(max(s['bytes'] for s in inputs))} MiB "
        f"holding at most {max(s['live'] for s in inputs):,} live rows "
        f"(dead: at most {max(s['dead'] for s in inputs):,}); the queue (`chunks`) "
        f"{mib(min(c['bytes'] for c in queue))}-{mib(max(c['bytes'] for c in queue))} MiB, "
        f"at most {max(c['live'] for c in queue):,} live rows. "
        f"{result['samples']} samples.",
    ]
    return "\n".join(lines)


def render(path: Path) -> None:
    """Print the table of a finished run again from its JSON (``--render bench-results/soak.json``)."""
    print(table(json.loads(path.read_text())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--keep", type=int, default=10, help="results of this many latest batches are kept")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between size samples")
    parser.add_argument("--tune", action="store_true", help="per-table autovacuum settings of TUNING first")
    parser.add_argument("--render", type=Path, help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.render:
        render(args.render)
        return 0
    result = run(args.batches, args.rows, args.runners, args.keep, args.sample, args.tune)
    text = table(result)
    print(text)
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    name = "soak-tuned" if args.tune else "soak"
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
