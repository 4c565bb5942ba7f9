"""A final batch's compound scores summed up: their mean and a 20-bin histogram, counted once.

The summary is counted in PostgreSQL in one pass over the batch's results and kept in
``batch_summaries`` once the scores can no longer change: the batch is final and no runner holds
one of its chunks (a cancelled batch's chunks in hand still commit rows). The runner whose finish
completes a batch keeps it (:func:`core.batches.lifecycle.finished`); otherwise the first read of
the final batch does. A final batch that is not settled yet is counted on each read, not kept.

Bins: bin ``i`` holds scores in ``[-1 + i/10, -0.9 + i/10)``; the last one also holds 1. A score
is binned on its four decimals as an integer, ``min(19, (round(compound * 10000) + 10000) //
1000)``, exactly as the batch page's live histogram bins the scores it receives
(``webapp/static/batch_view.js``), so a score on an edge such as -0.9 lands in the bin it starts.
Rows whose scoring failed have no score and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import class_row

from core.jsonshape import COUNT, Member, dump
from core.queries import q

if TYPE_CHECKING:
    from core.batches.model import Batch

#: Bins of the histogram, from -1 to 1.
BINS = 20
#: The bins' edges: -1, -0.9, ..., 1.
EDGES = tuple(round(-1 + i / 10, 1) for i in range(BINS + 1))


@dataclass(frozen=True)
class ScoreSummary:
    """A final batch's compound scores: how many, their mean, rows per bin."""

    scored_count: int
    mean_compound: float | None
    histogram: list[int]
    computed_at: datetime | None  # when it was kept; None while counted on each read
    kept: bool  # kept in batch_summaries: its scores can no longer change

    def to_json(self) -> dict[str, Any]:
        """The members the batch's ``summary`` gains."""
        return dump(self, SCORE_MEMBERS)


SCORE_MEMBERS = (
    Member(
        "mean_compound",
        lambda s: None if s.mean_compound is None else round(s.mean_compound, 4),
        {
            "type": ["number", "null"],
            "minimum": -1,
            "maximum": 1,
            "description": "The scored rows' mean compound score, to four decimals; null without any.",
        },
    ),
    Member(
        "histogram",
        lambda s: {"edges": list(EDGES), "counts": s.histogram},
        {
            "type": "object",
            "description": "Scored rows per bin of compound score: bin i holds edges[i] <= score < "
            "edges[i+1], the last bin also 1; scores are binned on their four decimals.",
            "required": ["edges", "counts"],
            "properties": {
                "edges": {"type": "array", "items": {"type": "number"}, "minItems": 21, "maxItems": 21},
                "counts": {"type": "array", "items": COUNT, "minItems": BINS, "maxItems": BINS},
            },
        },
    ),
)


def keep(conn: psycopg.Connection, batch_id: int) -> bool:
    """Count and keep a final batch's summary if its scores can no longer change and it has none
    yet; whether it is kept now."""
    if _kept(conn, batch_id) is not None:
        return True
    return _count(conn, batch_id, settled_only=True).kept


def read(conn: psycopg.Connection, batch: Batch) -> ScoreSummary | None:
    """A final batch's summary: the kept one, or counted now (and kept when it can be); None while
    the batch is processing. Inside the caller's transaction, which must commit to keep it."""
    if not batch.finished:
        return None
    return _kept(conn, batch.id) or _count(conn, batch.id, settled_only=False)


def _kept(conn: psycopg.Connection, batch_id: int) -> ScoreSummary | None:
    with conn.cursor(row_factory=class_row(ScoreSummary)) as cur:
        return cur.execute(q("batch_summaries_get"), {"batch_id": batch_id}).fetchone()


def _count(conn: psycopg.Connection, batch_id: int, *, settled_only: bool) -> ScoreSummary:
    """Count the scores; keep them when they can no longer change. Two statements: the count is
    a plain SELECT, which PostgreSQL may run in parallel, and once a batch is settled its scores
    stay as that count saw them."""
    params = {"batch_id": batch_id, "settled_only": settled_only}
    with conn.cursor(row_factory=class_row(ScoreSummary)) as cur:
        counted = cur.execute(q("batch_summaries_count"), params).fetchone()
    assert counted is not None  # an aggregate: always one row
    if not counted.kept:
        return counted
    params = {"batch_id": batch_id, **{k: getattr(counted, k) for k in _KEPT_COLUMNS}}
    kept = conn.execute(q("batch_summaries_keep"), params).fetchone()
    if kept is None:  # kept before (by a read or the finish), or the batch is deleted: none kept now
        return replace(counted, kept=_kept(conn, batch_id) is not None)
    return replace(counted, computed_at=kept[0])


_KEPT_COLUMNS = ("scored_count", "mean_compound", "histogram")
