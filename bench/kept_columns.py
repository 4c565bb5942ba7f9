"""Kept columns' cost: the same rows uploaded, and scored end to end, as a file of only ``id,text``
and as a help-desk export whose other columns are kept with each row.

The help-desk file is ``ticket_id,created,product,channel,priority,body``, uploaded with
``text_column=body&id_column=ticket_id``: four kept columns (``created``, ``product``,
``channel``, ``priority``). Both files hold the same ids and texts, so what differs is the kept
columns alone: their bytes in the body, parsed, copied into ``batch_inputs.fields``, and read
past by the runners' claims (which fetch the texts only). The baseline is the ``id,text`` file in
the same run; the two alternate, so drift on a shared machine falls on both.

``python -m bench.kept_columns [--rows N] [--e2e-rows M] [--repeat R]`` starts its own PostgreSQL,
a one-worker gunicorn for the uploads (each cancelled once measured, as in :mod:`bench.upload`)
and, for end to end, runners = cores on the same cluster.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import time
from pathlib import Path

import psycopg
import requests

from bench import Row
from bench.data import texts as make_texts
from bench.e2e import pipeline_rate
from bench.pgcpu import read_stat
from bench.service import REPO, cluster, gunicorn, worker_pids
from bench.upload import cancel, cpu_seconds, postgres_seconds

KEPT = ("created", "product", "channel", "priority")
QUERY = "?text_column=body&id_column=ticket_id"
_PRODUCTS = [f"{name} {model}" for name in ("Router", "Modem", "Mesh", "Phone plan") for model in "ABC"]
_CHANNELS = ("email", "chat", "phone", "web form")
_PRIORITIES = ("low", "normal", "high", "urgent")


def write_files(directory: Path, rows: int, seed: int = 2026) -> tuple[Path, Path]:
    """The ``id,text`` file and the help-desk file of the same ids and texts (cached by name)."""
    plain, kept = directory / f"plain-{rows}.csv", directory / f"helpdesk-{rows}.csv"
    if plain.exists() and kept.exists():
        return plain, kept
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    texts = make_texts("review", rows, seed=seed)
    with (
        plain.open("w", newline="", encoding="utf-8") as plain_file,
        kept.open("w", newline="", encoding="utf-8") as kept_file,
    ):
        plain_writer, kept_writer = csv.writer(plain_file), csv.writer(kept_file)
        plain_writer.writerow(["id", "text"])
        kept_writer.writerow(["ticket_id", *KEPT, "body"])
        start = 1_767_225_600  # 2026-01-01T00:00:00Z
        for index, text in enumerate(texts):
            ticket = f"T-{index:07d}"
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + rng.randrange(90 * 86_400)))
            plain_writer.writerow([ticket, text])
            kept_writer.writerow(
                [ticket, created, rng.choice(_PRODUCTS), rng.choice(_CHANNELS), rng.choice(_PRIORITIES), text]
            )
    return plain, kept


def _upload(base: str, path: Path, query: str) -> tuple[float, str]:
    """Seconds for one upload of ``path`` (raw text/csv) and the batch's id."""
    with path.open("rb") as handle:
        started = time.perf_counter()
        answer = requests.post(
            f"{base}/batch/upload{query}", data=handle, headers={"Content-Type": "text/csv"}, timeout=600
        )
        elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, answer.json()["batch_id"]


def uploads(rows: int, repeat: int, data_dir: Path) -> dict[str, float]:
    """Both files uploaded ``repeat`` times each, alternating: medians of rows/s and CPU per row."""
    plain, kept = write_files(data_dir, rows)
    shapes = {"plain": (plain, ""), "kept": (kept, QUERY)}
    seconds: dict[str, list[float]] = {name: [] for name in shapes}
    worker_us: dict[str, list[float]] = {name: [] for name in shapes}
    pg_us: dict[str, list[float]] = {name: [] for name in shapes}
    with cluster() as url, gunicorn(url) as (base, master):
        pid = worker_pids(master)[0]
        with psycopg.connect(url) as conn:
            postmaster = read_stat(conn.info.backend_pid).ppid
        small, _ = write_files(data_dir, 1_000)
        cancel(base, _upload(base, small, "")[1])  # warm the worker: pool, imports
        for turn in range(repeat):
            for name in ("plain", "kept") if turn % 2 == 0 else ("kept", "plain"):
                path, query = shapes[name]
                pg, worker = postgres_seconds(postmaster), cpu_seconds(pid)
                elapsed, batch_id = _upload(base, path, query)
                pg_us[name].append((postgres_seconds(postmaster) - pg) / rows * 1e6)
                worker_us[name].append((cpu_seconds(pid) - worker) / rows * 1e6)
                seconds[name].append(elapsed)
                cancel(base, batch_id)
    result: dict[str, float] = {"rows": rows, "bytes_ratio": kept.stat().st_size / plain.stat().st_size}
    for name in shapes:
        result[f"{name}_rows_per_s"] = rows / statistics.median(seconds[name])
        result[f"{name}_worker_us"] = statistics.median(worker_us[name])
        result[f"{name}_pg_us"] = statistics.median(pg_us[name])
    result["ratio"] = result["kept_rows_per_s"] / result["plain_rows_per_s"]
    return result


def end_to_end(rows: int, repeat: int, data_dir: Path) -> dict[str, float]:
    """Upload → completed with runners = cores, each file ``repeat`` times, alternating."""
    plain, kept = write_files(data_dir, rows)
    bodies = {"plain": (plain.read_bytes(), ""), "kept": (kept.read_bytes(), QUERY)}
    cores = os.cpu_count() or 1
    rates: dict[str, list[float]] = {name: [] for name in bodies}
    with cluster() as url:
        for turn in range(repeat):
            for name in ("plain", "kept") if turn % 2 == 0 else ("kept", "plain"):
                body, query = bodies[name]
                rates[name].append(pipeline_rate(url, body, rows, cores, query=query))
    result: dict[str, float] = {"rows": rows, "cores": cores}
    for name in bodies:
        result[f"{name}_rows_per_s"] = statistics.median(rates[name])
    result["ratio"] = result["kept_rows_per_s"] / result["plain_rows_per_s"]
    return result


def rows(upload: dict[str, float], e2e: dict[str, float]) -> list[Row]:
    """``make bench``'s rows: the help-desk file against the ``id,text`` file of the same rows."""
    kept = ", ".join(KEPT)
    return [
        (
            f"upload ingest, {upload['rows']:,} review rows with 4 kept columns ({kept}; "
            f"the file {upload['bytes_ratio']:.2f}× the bytes)",
            f"the same ids and texts as `id,text`, same run: {upload['plain_rows_per_s']:,.0f} rows/s; "
            f"web worker {upload['plain_worker_us']:.1f} µs, "
            f"PostgreSQL {upload['plain_pg_us']:.1f} µs per row",
            f"**{upload['ratio']:.2f}×** ({upload['kept_rows_per_s']:,.0f} rows/s); web worker "
            f"{upload['kept_worker_us']:.1f} µs, PostgreSQL {upload['kept_pg_us']:.1f} µs per row",
            f"≥ {1 / upload['bytes_ratio']:.2f}× (no more than the extra bytes)",
        ),
        (
            f"end to end (upload → completed), {e2e['rows']:,} review rows with the same 4 kept columns, "
            f"{e2e['cores']} runners (= cores)",
            f"the same rows as `id,text`, same run: {e2e['plain_rows_per_s']:,.0f} rows/s",
            f"**{e2e['ratio']:.2f}×** ({e2e['kept_rows_per_s']:,.0f} rows/s)",
            "≥ 0.95×",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kept_columns")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the uploads")
    parser.add_argument("--e2e-rows", type=int, default=100_000, help="rows scored end to end")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "bench")
    args = parser.parse_args(argv)
    table = rows(
        uploads(args.rows, args.repeat, args.data_dir),
        end_to_end(args.e2e_rows, args.repeat, args.data_dir),
    )
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
