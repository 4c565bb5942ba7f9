"""What a runner tells about each round it commits: one log line, and its Prometheus metrics."""

from __future__ import annotations

import logging
import time

from core.batches.queue import ScoredChunk
from jobrunner import metrics

log = logging.getLogger("jobrunner.runner")


def report_round(
    scored: list[ScoredChunk], done: set[int], times: tuple[float, float, float] | None = None
) -> int:
    """Log and count a committed round; ``times`` (started, claimed, scored) split its duration.
    How many of its chunks were committed (a chunk whose lease was lost is logged and left out)."""
    committed = 0
    timing = {}
    if times is not None:
        started, claimed, scored_at = times
        finished_at = time.perf_counter()
        timing = {
            "duration_ms": round((finished_at - started) * 1e3, 2),
            "claim_ms": round((claimed - started) * 1e3, 2),
            "score_ms": round((scored_at - claimed) * 1e3, 2),
            "commit_ms": round((finished_at - scored_at) * 1e3, 2),
        }
    for item in scored:
        chunk = item.chunk
        if chunk.chunk_id not in done:
            metrics.CHUNKS.labels("lease_lost").inc()
            log.warning(
                "chunk %s of batch %s: lease lost before commit, results dropped",
                chunk.chunk_id,
                chunk.batch_id,
            )
            continue
        committed += 1
        metrics.CHUNKS.labels("done").inc()
        metrics.ROWS.labels("scored").inc(len(item.scores) - item.failed)
        metrics.ROWS.labels("failed").inc(item.failed)
        if timing:
            metrics.CHUNK_SECONDS.observe(timing["duration_ms"] / 1e3)
    if done:
        rows = sum(len(item.scores) for item in scored if item.chunk.chunk_id in done)
        # One line per round: its chunks were claimed, scored and committed together.
        log.info(
            "chunks %s of batch %s: %d rows in %s ms",
            ",".join(str(chunk_id) for chunk_id in sorted(done)),
            scored[0].chunk.batch_id,
            rows,
            timing.get("duration_ms", "?"),
            extra={
                "batch": scored[0].chunk.batch_id,
                "chunks": sorted(done),
                "rows": rows,
                "attempt": max(item.chunk.attempts for item in scored),
                **timing,
            },
        )
    return committed
