"""End to end: upload -> completed, with 1, 2 and 4 runner processes, against
bare loops of polarity_scores over the same texts measured in the same run;
and where a runner's loop time goes (scoring, waiting on the database) on short texts."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import psycopg

from bench import Row
from bench.data import texts as make_texts
from bench.probe import Probe
from bench.service import cluster, runners


def _loop(args: tuple[str, list[str]]) -> int:
    scorer, items = args
    if scorer == "package":
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        polarity = SentimentIntensityAnalyzer().polarity_scores
    else:
        from jobrunner.vader_fast import FastVader

        polarity = FastVader().polarity_scores
    for item in items:
        polarity(item)
    return len(items)


# Bare loops run over a sample of the texts (rates are per row; the package's
# loop over all of them would take minutes and tell nothing more).
LOOP_SAMPLE = 30_000


def bare_loop_rate(scorer: str, items: list[str], processes: int) -> float:
    """Rows/s of a bare polarity_scores loop split over ``processes`` processes."""
    items = items[:LOOP_SAMPLE]
    parts = [items[i::processes] for i in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        pool.map(_loop, [(scorer, parts[0][:50])] * processes)  # warm up: imports, lexicon
        started = time.perf_counter()
        pool.map(_loop, [(scorer, part) for part in parts])
        return len(items) / (time.perf_counter() - started)


def _csv(items: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "text"])
    writer.writerows((f"r{i}", t) for i, t in enumerate(items))
    return buffer.getvalue().encode()


class LockWatch(Probe):
    """Samples pg_stat_activity every 5 ms: how often a runner's statement waits on a lock."""

    def __init__(self, url: str) -> None:
        super().__init__(0.005, url)
        self.samples = self.waiting = 0

    def sample(self, conn: psycopg.Connection) -> None:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name = 'sentiment-runner'"
        ).fetchone()[0]
        self.samples += 1
        self.waiting += waiting > 0

    @property
    def share(self) -> float:
        return self.waiting / max(self.samples, 1)


LOCK_WAITS: dict[int, list[float]] = {}


def pipeline_rate(
    url: str, body: bytes, rows: int, count: int, log: Path | None = None, query: str = ""
) -> float:
    """Rows/s from the start of the upload to the batch's completion, with ``count`` runners;
    ``query``: the upload's query string (``?text_column=…``), if any.

    Also records in LOCK_WAITS[count] the share of samples in which some
    runner's claim or finish waited on a row lock (the batch's progress row
    would show up here if it serialized the runners).
    """
    from webapp import create_app

    app = create_app({"database_url": url, "migrate_on_start": False})
    try:
        with runners(url, count, log, POLL_SECONDS="0.2"), psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM runners").fetchone()[0] < count:
                assert time.monotonic() < deadline, "runners did not start"
                time.sleep(0.05)
            started = time.perf_counter()
            answer = (
                app.test_client().post(f"/batch/upload{query}", data=body, content_type="text/csv").get_json()
            )
            status = "SELECT status FROM batches WHERE public_id = %s"
            with LockWatch(url) as locks:
                while conn.execute(status, (answer["batch_id"],)).fetchone()[0] == "processing":
                    time.sleep(0.02)
            elapsed = time.perf_counter() - started
            LOCK_WAITS.setdefault(count, []).append(locks.share)
        # Once the runners have stopped: the one that completed the batch may still be keeping
        # its summary.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM batch_results; DELETE FROM batches;")
        return rows / elapsed
    finally:
        app.extensions["db_pool"].close()


def time_split(log: Path) -> dict[str, float]:
    """Share of the runners' loop time spent scoring and waiting on the database (claims and commits
    it could not overlap), from the line each runner logs when it stops; time idle before the batch
    arrived and after it finished is left out."""
    totals = {"scoring_s": 0.0, "waiting_s": 0.0}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if "scoring_s" in entry:
            for key in totals:
                totals[key] += entry[key]
    whole = sum(totals.values()) or 1.0
    return {key.removesuffix("_s"): value / whole for key, value in totals.items()}


def run(rows: int, repeat: int = 3) -> dict:
    items = make_texts("review", rows, seed=7)
    body = _csv(items)
    cores = os.cpu_count() or 1
    result: dict = {"rows": rows, "cores": cores, "baseline": {}, "pipeline": {}}
    with cluster() as url:
        for processes in sorted({1, cores}):
            for scorer in ("package", "fast"):
                result["baseline"][(scorer, processes)] = statistics.median(
                    bare_loop_rate(scorer, items, processes) for _ in range(repeat)
                )
        for count in sorted({1, 2, 4, cores}):
            result["pipeline"][count] = statistics.median(
                pipeline_rate(url, body, rows, count) for _ in range(repeat)
            )
    result["lock_waits"] = {count: statistics.median(shares) for count, shares in LOCK_WAITS.items()}
    return result


def run_short(rows: int) -> dict:
    """Short texts, runners = cores: rate against the bare loops, and the runners' time split."""
    items = make_texts("short", rows, seed=8)
    cores = os.cpu_count() or 1
    log = Path(tempfile.mkstemp(prefix="bench-runners-", suffix=".log")[1])
    try:
        with cluster() as url:
            package = bare_loop_rate("package", items, cores)
            fast = bare_loop_rate("fast", items, cores)
            rate = pipeline_rate(url, _csv(items), rows, cores, log)
        return {
            "rows": rows,
            "cores": cores,
            "package": package,
            "fast": fast,
            "pipeline": rate,
            "split": time_split(log),
        }
    finally:
        log.unlink(missing_ok=True)


def rows(e: dict) -> list[Row]:
    """``make bench``'s rows for :func:`run`: against the bare loops, and 1, 2, 4 runners."""
    cores, base, pipe = e["cores"], e["baseline"], e["pipeline"]
    table: list[Row] = []
    for count, label, target in (
        (1, "1 runner", "≥ 0.9× (of the package loop)"),
        (cores, f"{cores} runners (= cores)", "≥ 0.85× of our loop"),
    ):
        package, fast = base[("package", count)], base[("fast", count)]
        table.append(
            (
                f"end to end (upload → completed), {e['rows']:,} review rows, {label}",
                f"bare loop of the package's polarity_scores in {count} process(es): "
                f"{package:,.0f} rows/s; of ours: {fast:,.0f} rows/s",
                f"**{pipe[count] / package:.2f}×** the package loop, {pipe[count] / fast:.2f}× our loop "
                f"({pipe[count]:,.0f} rows/s)",
                target,
            )
        )
    table.append(
        (
            "1, 2, 4 runners on one batch",
            f"1 runner: {pipe[1]:,.0f} rows/s",
            f"2: **{pipe[2] / pipe[1]:.2f}×**, 4: **{pipe[4] / pipe[1]:.2f}×** "
            f"(4 vs 2: {pipe[4] / pipe[2]:.2f}×); a runner waited on a row lock in "
            f"{e['lock_waits'][4]:.1%} of samples with 4 runners ({e['lock_waits'][1]:.1%} with 1)",
            "no collapse: 4 ≥ 2",
        )
    )
    return table


def short_rows(short: dict) -> list[Row]:
    """``make bench``'s row for :func:`run_short`."""
    split = ", ".join(f"{name} {share:.0%}" for name, share in short["split"].items())
    return [
        (
            f"end to end, {short['rows']:,} short texts, runners = cores",
            f"bare loop of the package in {short['cores']} processes: {short['package']:,.0f} rows/s; "
            f"of ours: {short['fast']:,.0f} rows/s",
            f"**{short['pipeline'] / short['package']:.2f}×** the package loop, "
            f"{short['pipeline'] / short['fast']:.2f}× our loop ({short['pipeline']:,.0f} rows/s); "
            f"runners' loop time: {split}",
            "≥ 0.5× of our loop",
        )
    ]
