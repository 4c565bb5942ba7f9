"""``make bench`` / ``make bench-quick``: run every benchmark, print one table.

Each figure is a ratio against a baseline measured in the same run (the
machine is shared and noisy, absolute times drift); medians of 3 runs. The
table is also written to ``bench-results/latest.md`` for the README.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    Row,
    ceiling,
    e2e,
    follow,
    groups,
    hostile,
    kept_columns,
    latency,
    partitions,
    purge,
    reads,
    retention,
    summary,
    upload,
    vader,
)

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller inputs (~2 minutes)")
    args = parser.parse_args(argv)

    def size(quick: int, full: int) -> int:
        return quick if args.quick else full

    def say(what: str) -> None:
        print(f"{what} ...", flush=True)

    say("vader: corpus equality, speed, scaling")
    v = vader.run(quick=args.quick)
    rows: list[Row] = vader.rows(v)

    n = size(100_000, 1_000_000)
    say(f"upload: {n:,} review rows")
    rows += upload.rows(upload.run(n, 3, REPO / "var" / "bench"))

    n, m = size(100_000, 1_000_000), size(20_000, 100_000)
    say(f"kept columns: {n:,} rows uploaded, {m:,} scored, with 4 kept columns and with id,text only")
    rows += kept_columns.rows(
        kept_columns.uploads(n, 3, REPO / "var" / "bench"),
        kept_columns.end_to_end(m, 3, REPO / "var" / "bench"),
    )

    say("partitions: an upload's latency with 100 partitions and with 10,000")
    rows += partitions.rows(partitions.run(uploads=size(15, 30)))

    n = size(20_000, 100_000)
    say(f"end to end: {n:,} review rows, 1/2/4 runners")
    rows += e2e.rows(e2e.run(n))

    n = size(100_000, 1_000_000)
    say(f"end to end: {n:,} short texts, runners = cores")
    rows += e2e.short_rows(e2e.run_short(n))

    n = size(20_000, 200_000)
    say(f"queue ceiling: {n:,} review rows, a scorer that costs nothing")
    rows += ceiling.ceiling_rows(ceiling.ceiling(n))

    n = size(100_000, 1_000_000)
    say(f"CPU per row: {n:,} review rows, real scorer, runners = cores")
    rows += ceiling.cpu_rows(ceiling.cpu(n))

    n = size(50_000, 200_000)
    say(f"latency: 1 runner, {n:,} short texts, 2 ms added per round trip")
    rows += latency.rows(latency.run(n))

    n = size(200_000, 1_000_000)
    say(f"reads: pages, OFFSET, export over {n:,} results")
    rows += reads.page_rows(reads.pages_and_export(n))

    n = size(50_000, 300_000)
    say(f"load: 50 pollers idle and busy, fairness behind {n:,} rows")
    rows += reads.load_rows(reads.load_and_fairness(n, seconds=size(5, 10)))

    n, m = size(100_000, 1_000_000), size(20_000, 100_000)
    say(f"follow: first row of {n:,} rows; {m:,} rows with 50 followers and none")
    rows += follow.rows(follow.first_row(n), follow.throughput(m))

    n = size(20_000, 100_000)
    say(f"purge: 10 finished batches of {n:,} results while 2 runners score")
    rows += purge.rows(purge.run(n))
    say(f"retention: 10 batches × {n:,} results reaped as rows, then dropped as a partition")
    rows.append(retention.row(retention.run(n)))

    n = size(100_000, 1_000_000)
    say(f"summary: mean and histogram of a finished batch of {n:,} results")
    rows += summary.rows(summary.run(n))
    say(f"groups: a finished batch of {n:,} results by a kept column of 10,000 distinct values")
    rows += groups.rows(groups.run(n, 10_000))

    say("hostile: bodies whose record never ends, 50 slow clients")
    rows += hostile.rows(hostile.linear(), hostile.slow_clients(seconds=size(5, 10)))

    header = ["figure", "baseline (same run)", "result", "target"]
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        f"`make {'bench-quick' if args.quick else 'bench'}`; medians of 3.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    table = "\n".join(lines)
    print(table)
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    (out / ("quick.md" if args.quick else "latest.md")).write_text(table + "\n")
    if v["differences"]:
        print("VADER differences, first examples:", v["examples"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
