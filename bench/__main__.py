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

from bench import ceiling, e2e, hostile, latency, pgcpu, purge, reads, retention, upload, vader

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
    rows: list[tuple[str, str, str, str]] = []  # figure, baseline, result, target

    print("vader: corpus equality, speed, scaling ...", flush=True)
    v = vader.run(quick=args.quick)
    rows.append(
        (
            f"exact VADER: {v['corpus']:,} generated texts",
            "vaderSentiment 3.3.2, same texts",
            f"{v['differences']} differences in (neg, neu, pos, compound)",
            "0",
        )
    )
    for profile, target in (("review", "≥ 2×"), ("short", "≥ 1.5×")):
        s = v["speed"][profile]
        rows.append(
            (
                f"VADER speed, {profile} texts",
                f"package: {s['reference_per_s']:,.0f} texts/s",
                f"**{s['ratio']:.2f}×** ({s['fast_per_s']:,.0f} texts/s)",
                target,
            )
        )
    for kind in ("chars", "emoji"):
        points = [p for p in v["scaling"] if p["kind"] == kind]
        ref = " / ".join(f"{p['reference_s'] * 1e3:.1f}" for p in points)
        fast = " / ".join(f"{p['fast_s'] * 1e3:.2f}" for p in points)
        lengths = " / ".join(f"{p['length']:,}" for p in points)
        growth_ref = points[-1]["reference_s"] / points[0]["reference_s"]
        growth_fast = points[-1]["fast_s"] / points[0]["fast_s"]
        rows.append(
            (
                f"time vs length, {kind} {lengths}",
                f"package ms: {ref} (×{growth_ref:.0f} for 8× length)",
                f"ours ms: {fast} (×{growth_fast:.1f} for 8× length)",
                "linear (≈ ×8)",
            )
        )

    upload_rows = 100_000 if args.quick else 1_000_000
    print(f"upload: {upload_rows:,} review rows ...", flush=True)
    u = upload.run(upload_rows, 3, REPO / "var" / "bench")
    rows.append(
        (
            f"upload ingest, {upload_rows:,} review rows ({u['file_mb']:.0f} MB)",
            f"psycopg COPY of the same bytes into a TEMP table (no WAL): {u['copy_rows_per_s']:,.0f} rows/s",
            f"**{u['ratio']:.2f}×** ({u['upload_rows_per_s']:,.0f} rows/s)",
            "≥ 0.5×",
        )
    )
    rows.append(
        (
            "same upload",
            "the same COPY into a regular (WAL-logged, crash-safe) table, as batch_inputs is: "
            f"{u['logged_copy_rows_per_s']:,.0f} rows/s",
            f"**{u['logged_ratio']:.2f}×**",
            "≥ 0.6×",
        )
    )
    rows.append(
        (
            "web worker memory during that upload",
            f"idle RSS {u['idle_rss_mb']:.0f} MB",
            f"peak **+{u['peak_rss_growth_mb']:.1f} MB**",
            "≤ +30 MB",
        )
    )

    e2e_rows = 20_000 if args.quick else 100_000
    print(f"end to end: {e2e_rows:,} review rows, 1/2/4 runners ...", flush=True)
    e = e2e.run(e2e_rows)
    cores, base, pipe = e["cores"], e["baseline"], e["pipeline"]
    for runners, label, target in (
        (1, "1 runner", "≥ 0.9× (of the package loop)"),
        (cores, f"{cores} runners (= cores)", "≥ 0.85× of our loop"),
    ):
        package, fast = base[("package", runners)], base[("fast", runners)]
        rows.append(
            (
                f"end to end (upload → completed), {e2e_rows:,} review rows, {label}",
                f"bare loop of the package's polarity_scores in {runners} process(es): "
                f"{package:,.0f} rows/s; of ours: {fast:,.0f} rows/s",
                f"**{pipe[runners] / package:.2f}×** the package loop, {pipe[runners] / fast:.2f}× our loop "
                f"({pipe[runners]:,.0f} rows/s)",
                target,
            )
        )
    rows.append(
        (
            "1, 2, 4 runners on one batch",
            f"1 runner: {pipe[1]:,.0f} rows/s",
            f"2: **{pipe[2] / pipe[1]:.2f}×**, 4: **{pipe[4] / pipe[1]:.2f}×** "
            f"(4 vs 2: {pipe[4] / pipe[2]:.2f}×); a runner waited on a row lock in "
            f"{e['lock_waits'][4]:.1%} of samples with 4 runners ({e['lock_waits'][1]:.1%} with 1)",
            "no collapse: 4 ≥ 2",
        )
    )

    short_rows = 100_000 if args.quick else 1_000_000
    print(f"end to end: {short_rows:,} short texts, runners = cores ...", flush=True)
    short = e2e.run_short(short_rows)
    split = ", ".join(f"{name} {share:.0%}" for name, share in short["split"].items())
    rows.append(
        (
            f"end to end, {short_rows:,} short texts, runners = cores",
            f"bare loop of the package in {short['cores']} processes: {short['package']:,.0f} rows/s; "
            f"of ours: {short['fast']:,.0f} rows/s",
            f"**{short['pipeline'] / short['package']:.2f}×** the package loop, "
            f"{short['pipeline'] / short['fast']:.2f}× our loop ({short['pipeline']:,.0f} rows/s); "
            f"runners' loop time: {split}",
            "≥ 0.5× of our loop",
        )
    )

    ceiling_rows = 20_000 if args.quick else 200_000
    print(f"queue ceiling: {ceiling_rows:,} review rows, a scorer that costs nothing ...", flush=True)
    c = ceiling.ceiling(ceiling_rows)
    alone, pipe = c["alone"], c["pipeline"]
    rows.append(
        (
            f"queue ceiling: upload → completed, {ceiling_rows:,} review rows, constant scorer "
            "(`tests.scorers:constant`), 1 / 2 / 4 runners",
            f"PostgreSQL alone writing the same rows: COPY into inputs, one INSERT … SELECT of the "
            f"narrow results: {alone:,.0f} rows/s",
            " / ".join(f"**{pipe[n] / alone:.2f}×** ({pipe[n]:,.0f} rows/s)" for n in (1, 2, 4))
            + "; the upload was "
            + " / ".join(f"{c['upload_share'][n]:.0%}" for n in (1, 2, 4))
            + " of the time",
            "≥ 0.75× (2 runners)",
        )
    )
    cpu_rows = 100_000 if args.quick else 1_000_000
    print(f"CPU per row: {cpu_rows:,} review rows, real scorer, runners = cores ...", flush=True)
    k = ceiling.cpu(cpu_rows)
    rows.append(
        (
            f"runner CPU : PostgreSQL CPU, {cpu_rows:,} review rows, {k['cores']} runners, real scorer",
            f"PostgreSQL's processes (/proc): {k['pg_upload_us']:.1f} µs per row for the upload, "
            f"{k['pg_scoring_us']:.1f} µs per row for claims, finishes and housekeeping",
            f"runners {k['runner_us']:.0f} µs per row: **{k['ratio']:.1f} : 1** "
            f"({k['ratio_scoring']:.1f} : 1 counting the scoring phase alone); PostgreSQL's scoring "
            f"phase **{k['pg_scoring_us']:.1f} µs per row**",
            "≥ 10 : 1; scoring phase ≤ 6 µs per row",
        )
    )
    rows.append(
        (
            f"WAL per row, the whole pipeline (upload → completed), {cpu_rows:,} review rows",
            "pg_current_wal_insert_lsn() before the upload and after the batch completed",
            f"**{k['wal_per_row']:,.0f} bytes** per row "
            f"({k['wal_upload_per_row']:,.0f} of them by the upload)",
            "≤ 700 bytes",
        )
    )
    rows.extend(pgcpu.rows(k))
    lat_rows = 50_000 if args.quick else 200_000
    print(f"latency: 1 runner, {lat_rows:,} short texts, 2 ms added per round trip ...", flush=True)
    lat = latency.run(lat_rows)
    rows.append(
        (
            f"1 runner, {lat_rows:,} short texts, 2 ms added to every round trip to PostgreSQL "
            "(a delaying TCP proxy, `bench/delay_proxy.py`)",
            f"the same runner connected straight to PostgreSQL: {lat['direct']:,.0f} rows/s "
            f"(through the proxy with no delay: {lat['proxy']:,.0f} rows/s)",
            f"**{lat['delayed'] / lat['direct']:.2f}×** ({lat['delayed']:,.0f} rows/s; "
            f"{lat['delayed'] / lat['proxy']:.2f}× the undelayed proxy)",
            "≥ 0.85×",
        )
    )

    read_rows = 200_000 if args.quick else 1_000_000
    print(f"reads: pages, OFFSET, export over {read_rows:,} results ...", flush=True)
    r = reads.pages_and_export(read_rows)
    rows.append(
        (
            f"results page {r['deep_page']:,} (per_page 50) of a {read_rows:,}-row batch",
            f"page 1 of the same batch: {r['first_ms']:.2f} ms",
            f"**{r['deep_ms'] / r['first_ms']:.2f}×** its latency ({r['deep_ms']:.2f} ms)",
            "≤ 1.5×",
        )
    )
    for name, o in r["ordered"].items():
        rows.append(
            (
                f"results `?{name}` page {o['page']:,} (per_page 50)",
                f"page 1 of the same list: {o['first_ms']:.2f} ms",
                f"**{o['deep_ms'] / o['first_ms']:.2f}×** its latency ({o['deep_ms']:.2f} ms); the "
                f"first request, which writes the list's checkpoints: {o['first_deep_ms']:.0f} ms",
                "≤ 1.5×",
            )
        )
    rows.append(
        (
            "same page",
            f"OFFSET … LIMIT 50 + count(*) run directly: {r['offset_ms']:.1f} ms",
            f"**{r['offset_ms'] / r['deep_ms']:.0f}× faster** ({r['deep_ms']:.2f} ms over HTTP)",
            "≥ 10× faster",
        )
    )
    rows.append(
        (
            f"full CSV export of {read_rows:,} results ({r['export_mb']:.0f} MB)",
            f"COPY (SELECT …) TO STDOUT of the same rows: {r['copy_rows_per_s']:,.0f} rows/s",
            f"**{r['export_rows_per_s'] / r['copy_rows_per_s']:.2f}×** "
            f"({r['export_rows_per_s']:,.0f} rows/s); "
            f"web worker peak +{r['export_rss_growth_mb']:.1f} MB",
            "≥ 0.5×, constant memory",
        )
    )
    big_rows = 50_000 if args.quick else 300_000
    print(f"load: 50 pollers idle and busy, fairness behind {big_rows:,} rows ...", flush=True)
    load = reads.load_and_fairness(big_rows, seconds=5 if args.quick else 10)
    idle, busy = load["idle"], load["busy"]
    rows.append(
        (
            "`GET /batch/<id>` under 50 concurrent pollers while 2 runners work",
            f"the same endpoint idle: p50 {idle['p50']:.1f} ms, p99 {idle['p99']:.1f} ms "
            f"({idle['requests']:,} requests, {idle['errors']} errors)",
            f"p50 **{busy['p50']:.1f} ms**, p99 **{busy['p99']:.1f} ms** ({busy['requests']:,} requests, "
            f"**{busy['errors']} errors**)",
            "p50, p99 reported; 0 errors",
        )
    )
    rows.append(
        (
            f"a 100-row batch uploaded while a {load['big_rows']:,}-row batch runs",
            "—",
            f"completed in **{load['small_seconds']:.2f} s** "
            f"(the big batch was {load['big_done_percent']}% done)",
            "seconds (fairness)",
        )
    )

    purge_rows = 20_000 if args.quick else 100_000
    print(f"purge: 10 finished batches of {purge_rows:,} results while 2 runners score ...", flush=True)
    p = purge.run(purge_rows)
    rows.append(
        (
            f"purge of 10 finished batches × {purge_rows:,} results while 2 runners score",
            f"one transaction deletes them all: {p['old_seconds']:.2f} s, "
            f"the live batch's longest pause {p['old_stall_s'] * 1e3:.0f} ms (none purging: "
            f"{p['quiet_stall_s'] * 1e3:.0f} ms); the runner doing it paused for all of it",
            f"marked, then reaped in 5,000-row steps: **{p['ours_seconds']:.1f} s** in all, longest pause "
            f"**{p['ours_stall_s'] * 1e3:.0f} ms**; no runner pauses more than 0.5 s per turn",
            "no transaction over one step; pauses bounded",
        )
    )

    print(
        f"retention: 10 batches × {purge_rows:,} results reaped as rows, then dropped as a partition ...",
        flush=True,
    )
    r = retention.run(purge_rows)
    rows.append(retention.row(r))

    print("hostile: bodies whose record never ends, 50 slow clients ...", flush=True)
    rows.extend(hostile.rows(hostile.linear(), hostile.slow_clients(seconds=5 if args.quick else 10)))

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
