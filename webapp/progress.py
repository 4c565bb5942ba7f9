"""A batch's progress as people read it: rows done, percent, rows per second, time left.

The JSON status and the batch page both take their figures from here. Rows
set aside at upload and rows whose scoring failed count as done, so the bar
reaches 100 % exactly when the batch completes. The rate is the batch's
average since a runner first claimed one of its chunks; the page's script
replaces it with a rate over the last few seconds while it watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Below this much elapsed time a rate is noise, not information.
_MIN_ELAPSED_SECONDS = 0.5


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    scored: int  # by runners: processed plus failed
    percent: float
    rows_per_second: float | None
    seconds_left: float | None

    @classmethod
    def of(cls, batch: dict[str, Any], now: datetime | None = None) -> Progress:
        total = batch["total_count"]
        scored = batch["processed_count"] + batch["failed_count"]
        done = scored + batch["invalid_count"]
        percent = round(100.0 * done / total, 1) if total else 100.0
        rate = None
        started = batch["started_at"]
        if started is not None:
            until = batch["completed_at"] or now or datetime.now(UTC)
            elapsed = (until - started).total_seconds()
            if elapsed >= _MIN_ELAPSED_SECONDS and scored:
                rate = scored / elapsed
        seconds_left = None
        if batch["status"] == "processing" and rate:
            seconds_left = (total - done) / rate
        return cls(total, done, scored, percent, rate, seconds_left)


def describe_duration(seconds: float) -> str:
    """A short human duration: '45 s', '3 min 20 s', '2 h 5 min'."""
    whole = round(seconds)
    if whole < 1:
        return "under a second"
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
