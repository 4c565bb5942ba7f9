"""A final batch's results summed up per value of one kept column: counts and mean, counted once.

The groups of a column (one of ``batches.field_names``) are counted in PostgreSQL in one pass
over the batch's inputs joined with its results, by the first read that asks for that column
once the batch is final, and kept in ``batch_group_summaries`` once the results can no longer
change (no runner holds one of its chunks, as for :mod:`core.batches.summaries`; until then
they are counted on each read, not kept).

What is kept: the :data:`KEPT_GROUPS` largest groups, ranked by rows (most first), ties by value
in byte order, and rank 0, every other value folded together. Any ``limit`` up to KEPT_GROUPS is
answered from those rows alone (the ranks past it fold into ``other`` too), and a batch keeps at
most KEPT_GROUPS + 1 rows per column asked for, so its deletion (the foreign key's cascade when
the reaper removes the batch row, :func:`core.batches.lifecycle.reap`) stays small however many
distinct values a column holds.

Concurrency: the first reads of one column try a transaction-scoped advisory lock on (batch,
column); a second one, finding it held, is told to retry (NotReady) rather than wait for the
first's count, and once the first commits reads what it kept; the insert also leaves a set already
kept as it is, and keeps nothing for a batch deleted meanwhile.

Rows whose scoring failed count in ``count`` and ``failed``, not in the sentiments or the mean;
rows never scored (a cancelled batch's) are in no group.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from core.batches.model import Batch
from core.batches.store import not_found
from core.errors import Conflict, InvalidInput, NotReady
from core.jsonshape import COUNT, Member, dump, object_schema
from core.queries import q

#: Groups kept per column (and the largest ``limit``); the rest is folded into one.
KEPT_GROUPS = 1_000
#: The groups an answer holds unless it asks for another number.
DEFAULT_GROUPS = 50
#: The advisory lock class of one batch's column while its groups are first counted.
LOCK_CLASS = 20562
#: Seconds a request refused while another counts the same column is told to wait.
RETRY_SECONDS = 2
#: "Most negative" groups: the lowest mean compound among kept groups with this many scored rows.
MIN_SCORED_ROWS = 10


@dataclass(frozen=True)
class Group:
    """One value's rows (rank >= 1), or several values' folded together (rank 0)."""

    rank: int
    value: str | None
    groups: int
    row_count: int
    positive: int
    negative: int
    neutral: int
    failed: int
    compound_sum: float | None
    computed_at: datetime | None = None

    @property
    def scored(self) -> int:
        return self.positive + self.negative + self.neutral

    @property
    def mean_compound(self) -> float | None:
        if not self.scored or self.compound_sum is None:
            return None
        return round(self.compound_sum / self.scored, 4)

    def plus(self, other: Group) -> Group:
        """Two sets of rows folded into one (rank 0)."""
        sums = [s for s in (self.compound_sum, other.compound_sum) if s is not None]
        return Group(
            0,
            None,
            self.groups + other.groups,
            self.row_count + other.row_count,
            self.positive + other.positive,
            self.negative + other.negative,
            self.neutral + other.neutral,
            self.failed + other.failed,
            sum(sums) if sums else None,
            self.computed_at,
        )


@dataclass(frozen=True)
class GroupSummary:
    """The answer for one column: its largest ``limit`` groups and the rest as ``other``."""

    batch_id: str
    by: str
    limit: int
    groups: list[Group]
    other: Group
    kept: bool  # kept in batch_group_summaries: its counts can no longer change

    def to_json(self) -> dict[str, Any]:
        return dump(self, SUMMARY_MEMBERS)


def _counts(extra: tuple[Member, ...]) -> tuple[Member, ...]:
    return (
        *extra,
        Member("count", lambda g: g.row_count, {**COUNT, "description": "Results: scored rows and failed."}),
        Member("positive", lambda g: g.positive, COUNT),
        Member("negative", lambda g: g.negative, COUNT),
        Member("neutral", lambda g: g.neutral, COUNT),
        Member("failed", lambda g: g.failed, {**COUNT, "description": "Rows whose scoring failed."}),
        Member(
            "mean_compound",
            lambda g: g.mean_compound,
            {
                "type": ["number", "null"],
                "minimum": -1,
                "maximum": 1,
                "description": "The scored rows' mean compound score, to four decimals; null without any.",
            },
        ),
    )


GROUP_MEMBERS = _counts((Member("value", lambda g: g.value, {"type": "string"}),))
OTHER_MEMBERS = _counts(
    (Member("groups", lambda g: g.groups, {**COUNT, "description": "Distinct values folded together."}),)
)
SUMMARY_MEMBERS = (
    Member("batch_id", lambda s: s.batch_id, {"type": "string"}),
    Member("by", lambda s: s.by, {"type": "string", "description": "The kept column."}),
    Member("limit", lambda s: s.limit, {"type": "integer", "minimum": 1, "maximum": KEPT_GROUPS}),
    Member(
        "groups",
        lambda s: [dump(g, GROUP_MEMBERS) for g in s.groups],
        {"type": "array", "items": {"$ref": "#/components/schemas/Group"}, "maxItems": KEPT_GROUPS},
    ),
    Member("other", lambda s: dump(s.other, OTHER_MEMBERS), {"$ref": "#/components/schemas/OtherGroups"}),
)
SCHEMAS = {
    "GroupSummary": object_schema(
        SUMMARY_MEMBERS,
        "A final batch's results per value of one kept column: the largest groups (most rows first, "
        "ties by value in byte order), the rest folded into `other`.",
    ),
    "Group": object_schema(GROUP_MEMBERS, "One value of the column and its rows' counts."),
    "OtherGroups": object_schema(OTHER_MEMBERS, "Every value past `limit`, folded together."),
}


def column(batch: Batch, by: str | None) -> str:
    """The kept column ``by`` names: exactly, else the one column equal to it ignoring case and
    surrounding spaces (as an upload's ``text_column`` is matched); InvalidInput (400) naming the
    batch's kept columns otherwise."""
    names = batch.field_names
    if by in names:
        return by
    wanted = (by or "").strip().lower()
    matches = [name for name in names if name.strip().lower() == wanted]
    if by and len(matches) == 1:
        return matches[0]
    listed = ", ".join(map(repr, names))
    if not names:
        detail = "This batch has no kept columns: its file had only the text and the id."
    elif not by:
        detail = f"by must name one of the batch's kept columns: {listed}."
    else:
        detail = f"by={by!r} names no kept column of this batch; its kept columns are {listed}."
    raise InvalidInput("Unknown column", detail, "unknown-column", columns=list(names))


def require_final(batch: Batch) -> None:
    """Conflict (409) while the batch is processing: its groups are counted once it is final."""
    if not batch.finished:
        scorable = batch.total_count - batch.invalid_count
        raise Conflict(
            "Batch not finished",
            f"Summaries by group are available once the batch is finished; it is {batch.status} "
            f"({batch.processed_count} of {scorable} rows scored).",
            "batch-not-finished",
            status_of_batch=batch.status,
        )


def kept(conn: psycopg.Connection, batch: Batch, by: str, limit: int = DEFAULT_GROUPS) -> GroupSummary | None:
    """The column's kept groups, ``limit`` of them and the rest in ``other``; None until they are
    counted and kept. ``by`` must be a kept column (:func:`column`), the batch final
    (:func:`require_final`)."""
    require_final(batch)
    rows = _kept(conn, {"batch_id": batch.id, "field_name": by, "limit": limit})
    return fold(batch.public_id, by, limit, rows, True) if rows else None


def counted(conn: psycopg.Connection, batch: Batch, by: str, limit: int = DEFAULT_GROUPS) -> GroupSummary:
    """The column's groups counted now (one pass over the batch), and kept when they can no longer
    change; the kept ones if another request kept them first. Inside the caller's transaction,
    which must commit to keep them.

    Takes the column's advisory lock without waiting: while another transaction counts the same
    column this is NotReady (503 ``summary-not-ready``, retry in :data:`RETRY_SECONDS`) rather than
    a thread and a connection held for as long as that count lasts. NotFound if the batch is
    deleted (and reaped) while it is counted."""
    require_final(batch)
    lock = {"lock_class": LOCK_CLASS, "batch_id": batch.id, "field_name": by}
    if not conn.execute(q("batch_group_summaries_try_lock"), lock).fetchone()[0]:
        raise NotReady(
            "Summary not ready",
            f"The groups of {by!r} are being counted for another request; retry in "
            f"{RETRY_SECONDS} seconds to read them.",
            "summary-not-ready",
            retry_after=RETRY_SECONDS,
        )
    rows = _kept(conn, {"batch_id": batch.id, "field_name": by, "limit": limit})  # kept since kept() looked
    kept = bool(rows)
    if not rows:
        rows, kept = count(conn, batch, by)
    return fold(batch.public_id, by, limit, rows, kept)


def read(
    conn: psycopg.Connection, batch: Batch, by: str, limit: int = DEFAULT_GROUPS, *, count: bool = True
) -> GroupSummary | None:
    """The kept groups (:func:`kept`), else, with ``count``, counted now (:func:`counted`); None
    rather than count them without it."""
    summary = kept(conn, batch, by, limit)
    if summary is None and count:
        summary = counted(conn, batch, by, limit)
    return summary


def fold(batch_id: str, by: str, limit: int, rows: list[Group], kept: bool) -> GroupSummary:
    """Ranks 1 to ``limit`` as groups; rank 0 and the ranks past ``limit`` folded into ``other``."""
    ranked = sorted(rows, key=lambda g: g.rank)
    other = ranked[0]
    for group in ranked[limit + 1 :]:
        other = other.plus(group)
    return GroupSummary(batch_id, by, limit, ranked[1 : limit + 1], other, kept)


def most_negative(summary: GroupSummary, count: int = 5) -> list[Group]:
    """The ``count`` groups with the lowest mean compound among those with at least
    MIN_SCORED_ROWS scored rows (fewer say little), most rows first among equal means."""
    eligible = [g for g in summary.groups if g.scored >= MIN_SCORED_ROWS and g.mean_compound is not None]
    return sorted(eligible, key=lambda g: (g.mean_compound, -g.row_count, g.rank))[:count]


def _kept(conn: psycopg.Connection, params: dict[str, Any]) -> list[Group]:
    with conn.cursor(row_factory=class_row(Group)) as cur:
        return cur.execute(q("batch_group_summaries_get"), params).fetchall()


@dataclass(frozen=True)
class _Counted(Group):
    kept: bool = False


_KEPT_COLUMNS = tuple(f.name for f in fields(Group) if f.name != "computed_at")


def count(conn: psycopg.Connection, batch: Batch, by: str) -> tuple[list[Group], bool]:
    """Count the groups (one plain SELECT, which PostgreSQL may run in parallel); keep them when
    they can no longer change. The groups, and whether they are kept; NotFound if the batch has
    been deleted since it was read (nothing is kept for it). Under the column's lock
    (:func:`counted`)."""
    params = {"batch_id": batch.id, "k": batch.field_names.index(by) + 1, "top": KEPT_GROUPS}
    with conn.cursor(row_factory=class_row(_Counted)) as cur:
        found = cur.execute(q("batch_group_summaries_count"), params).fetchall()
    groups = [Group(**{k: getattr(c, k) for k in (*_KEPT_COLUMNS, "computed_at")}) for c in found]
    if not found[0].kept:
        return groups, False
    columns = {k: [getattr(g, k) for g in groups] for k in _KEPT_COLUMNS}
    live, at = conn.execute(
        q("batch_group_summaries_keep"), {"batch_id": batch.id, "field_name": by, **columns}
    ).fetchone()
    if not live:
        raise not_found(batch.public_id)
    return ([replace(g, computed_at=at) for g in groups] if at else groups), True
