"""Where the runners' time goes in one batch: py-spy samples of every runner, by phase.

Not part of ``make bench``: a profile to read beside its end-to-end rows. A fresh PostgreSQL,
``--runners`` runner processes waiting, one upload of ``--rows`` texts (``review`` or ``short``)
through the app in this process; py-spy (``--nonblocking``, so the runners are never paused)
samples each runner's threads while they are on a CPU, from a second before the upload until
the batch is final (the runners wait idle, off the CPU, before and after it).
Each sample is put in the first phase whose function is on its stack (:data:`PHASES`); the
table gives each phase's share of the runners' samples, beside the CPU seconds per row that
/proc gives for the runners, PostgreSQL and this process (the upload).

``python -m bench.profile [--rows N] [--kind review|short] [--runners N] [--rate HZ]``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench.ceiling import process_cpu, server_cpu
from bench.data import texts as make_texts
from bench.e2e import _csv
from bench.service import cluster, runners

#: (phase, function, its file): a sample goes to the first phase with that frame on its stack.
PHASES = (
    ("scoring: the VADER rules", "polarity_scores", "jobrunner/vader_fast.py"),
    ("scoring: around the rules (factorize, arrays)", "score_array", "jobrunner/scoring.py"),
    ("scoring: the rest of a chunk's scoring", "score_chunk", "jobrunner/chunk_scoring.py"),
    ("leases: renewals (the lease-keeper thread)", "_run", "jobrunner/lease_keeper.py"),
    ("housekeeping and webhooks", "_housekeeping", "jobrunner/round_pipe.py"),
    ("housekeeping and webhooks", "run", "jobrunner/webhooks.py"),
    ("queue: claims and finishes (the round-pipe thread)", "_serve", "jobrunner/round_pipe.py"),
    ("the loop itself (rounds, pacing, shelf)", "_work", "jobrunner/runner.py"),
)


#: How many functions the table lists, the busiest first.
TOP_FUNCTIONS = 15


def _phase(stack: str) -> str:
    # A frame reads ``Class.method (file:line)`` (qualified names, as Python 3.11 gives them).
    frames = [(frame.split(" (", 1)[0].rsplit(".", 1)[-1], frame) for frame in stack.split(";")]
    for phase, function, path in PHASES:
        if any(name == function and path in frame for name, frame in frames):
            return phase
    return "other (start-up, imports, signals)"


def _samples(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Samples by phase, and by the function on a CPU (the innermost frame), from py-spy's raw
    (collapsed) output: ``outer;...;inner count``, each frame ``function (file:line)``."""
    phases: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            phases[_phase(stack)] += int(count)
            functions[stack.rsplit(";", 1)[-1].rsplit(":", 1)[0] + ")"] += int(count)
    return phases, functions


@contextlib.contextmanager
def _sampling(spy: str, pids: list[int], workdir: Path, rate: int) -> Iterator[list[Path]]:
    """py-spy recording each of ``pids`` without pausing it, stopped (SIGINT: it writes its
    samples out) when the block ends, however it ends; the files it writes."""
    raws = [workdir / f"runner-{pid}.txt" for pid in pids]
    options = ["--nonblocking", "--threads", "--rate", str(rate), "--format", "raw"]
    spies = [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), *options, "--output", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, raw in zip(pids, raws, strict=True)
    ]
    try:
        time.sleep(1.0)  # attached
        yield raws
    finally:
        for spy_proc in spies:
            spy_proc.send_signal(signal.SIGINT)
        for spy_proc in spies:
            spy_proc.wait(timeout=60)


def run(rows: int, kind: str, count: int, rate: int) -> dict:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not on the PATH (pip install py-spy)")
    body = _csv(make_texts(kind, rows, seed=31))
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    from webapp import create_app

    try:
        with (
            cluster() as url,
            runners(url, count, POLL_SECONDS="0.2") as procs,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            app = create_app({"database_url": url, "migrate_on_start": False})
            while conn.execute("SELECT count(*) FROM runners").fetchone()[0] < count:
                time.sleep(0.05)
            with _sampling(spy, [proc.pid for proc in procs], workdir, rate) as raws:
                cpu_before = [process_cpu(proc.pid, reaped=False) for proc in procs]
                pg_before, self_before = server_cpu(url), time.process_time()
                started = time.perf_counter()
                answer = app.test_client().post("/batch/upload", data=body, content_type="text/csv")
                batch_id = answer.get_json()["batch_id"]
                uploaded = time.perf_counter()
                status = "SELECT status FROM batches WHERE public_id = %s"
                while conn.execute(status, (batch_id,)).fetchone()[0] == "processing":
                    time.sleep(0.05)
                elapsed = time.perf_counter() - started
                runner_cpu = sum(process_cpu(p.pid, reaped=False) for p in procs) - sum(cpu_before)
                pg_cpu, self_cpu = server_cpu(url) - pg_before, time.process_time() - self_before
            app.extensions["db_pool"].close()
        counts: collections.Counter[str] = collections.Counter()
        functions: collections.Counter[str] = collections.Counter()
        for out_file in raws:
            by_phase, by_function = _samples(out_file)
            counts += by_phase
            functions += by_function
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "rows": rows,
        "kind": kind,
        "runners": count,
        "seconds": elapsed,
        "upload_seconds": uploaded - started,
        "us_per_row": {
            "runners": runner_cpu / rows * 1e6,
            "postgresql": pg_cpu / rows * 1e6,
            "upload (this process)": self_cpu / rows * 1e6,
        },
        "samples": dict(counts.most_common()),
        "functions": dict(functions.most_common(TOP_FUNCTIONS)),
    }


def report(result: dict) -> str:
    total = sum(result["samples"].values()) or 1
    lines = [
        f"{result['rows']:,} {result['kind']} rows, {result['runners']} runners: "
        f"{result['rows'] / result['seconds']:,.0f} rows/s, upload → final {result['seconds']:.1f} s "
        f"(the upload {result['upload_seconds']:.1f} s)",
        "CPU per row: " + ", ".join(f"{who} {us:.1f} µs" for who, us in result["us_per_row"].items()),
        "",
        "| runners' samples on a CPU, by phase | share |",
        "|---|---|",
    ]
    lines += [f"| {phase} | {count / total:.1%} |" for phase, count in result["samples"].items()]
    lines += ["", "| the function on a CPU (innermost frame) | share |", "|---|---|"]
    lines += [f"| `{name}` | {count / total:.1%} |" for name, count in result["functions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--kind", choices=("review", "short"), default="review")
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second per runner")
    args = parser.parse_args(argv)
    print(report(run(args.rows, args.kind, args.runners, args.rate)))


if __name__ == "__main__":
    main()
