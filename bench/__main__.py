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

from bench import e2e, upload, vader

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
            f"psycopg COPY of the same bytes: {u['copy_rows_per_s']:,.0f} rows/s",
            f"**{u['ratio']:.2f}×** ({u['upload_rows_per_s']:,.0f} rows/s)",
            "≥ 0.5×",
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
        (1, "1 runner", "≥ 0.9×"),
        (cores, f"{cores} runners (= cores)", "≥ 0.85×"),
    ):
        package, fast = base[("package", runners)], base[("fast", runners)]
        rows.append(
            (
                f"end to end (upload → completed), {e2e_rows:,} review rows, {label}",
                f"bare loop of the package's polarity_scores in {runners} process(es): "
                f"{package:,.0f} rows/s; of ours: {fast:,.0f} rows/s",
                f"**{pipe[runners] / package:.2f}×** the package loop, {pipe[runners] / fast:.2f}× our loop "
                f"({pipe[runners]:,.0f} rows/s)",
                target + " (of the package loop)",
            )
        )
    rows.append(
        (
            "1, 2, 4 runners on one batch",
            f"1 runner: {pipe[1]:,.0f} rows/s",
            f"2: **{pipe[2] / pipe[1]:.2f}×**, 4: **{pipe[4] / pipe[1]:.2f}×** "
            f"(4 vs 2: {pipe[4] / pipe[2]:.2f}×)",
            "no collapse: 4 ≥ 2",
        )
    )

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
