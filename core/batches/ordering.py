"""Results in any order at any depth: by file order within one sentiment, or by compound score.

Each :class:`ResultOrder` is one index range of ``batch_results``: file order
(``row_number``, the primary key), one sentiment in file order
(``batch_results_sentiment_idx``), or compound order, most negative first or
most positive first, over the whole batch or within one sentiment
(``batch_results_compound_idx`` on ``(batch_id, sentiment, compound,
row_number)``: VADER's thresholds make the sentiment follow from compound, and
'negative' < 'neutral' < 'positive', so that index is also compound order over
the whole batch). Rows whose scoring failed have no compound: they are in file
order only.

Pages by cursor read on from a keyset position. Page P by number needs the
position of rank (P - 1) * per_page, which only file order knows by itself
(``row_number`` is dense). For the others, :func:`locate` reads the nearest of
the list's checkpoints (``result_checkpoints``: the position of every
100th row) and then at most 99 keys from there, so page 10,000 costs what
page 1 costs, plus three small index probes.

Checkpoints are written when a page needs them, from the last one written
onwards, by reading the list's keys (an index-only range) at most
:data:`SCAN_ROWS` at a time: a request never reads more than that however
deep it asks, and what it wrote commits with it. A page deeper than that
answers :data:`BUILDING` (the web answers 503 with Retry-After: 1) and the
next request goes on from there; a million-row list is covered in one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, namedtuple_row

from core.batches.model import SENTIMENTS, Batch, Result
from core.batches.store import not_found
from core.queries import q

#: Every how many rows of a list a checkpoint is written.
CHECKPOINT_EVERY = 100
#: Keys one request reads at most to write checkpoints (a few seconds, well inside STATEMENT_TIMEOUT).
SCAN_ROWS = 1_000_000
#: What :func:`locate` answers for a page past the end of the list ...
END = object()
#: ... and for a page deeper than the checkpoints written so far (ask again: they grow per request).
BUILDING = object()

_RESULT_COLUMNS = "row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error"


@dataclass(frozen=True)
class ResultOrder:
    """One way to list a batch's results, as SQL pieces and a keyset position."""

    name: str  # as in ?order= (and in result_checkpoints.listing)
    keys: tuple[str, ...]  # the ORDER BY columns; the position is their values
    descending: bool = False

    def order(self) -> sql.Composable:
        direction = sql.SQL(" DESC" if self.descending else "")
        return sql.SQL(", ").join(sql.Composed([sql.Identifier(k), direction]) for k in self.keys)

    def filter(self, sentiment: str | None) -> sql.Composable:
        if sentiment is not None:
            return sql.SQL("sentiment = {}").format(sql.Literal(sentiment))
        return sql.SQL("true") if self.keys == ("row_number",) else sql.SQL("sentiment IS NOT NULL")

    def after(self, position: Any) -> sql.Composable:
        """Rows past ``position`` in this order (None: from the start)."""
        if position is None:
            return sql.SQL("")
        values = position if isinstance(position, list) else [position]
        return sql.SQL("AND ({}) {} ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, self.keys)),
            sql.SQL("<" if self.descending else ">"),
            sql.SQL(", ").join(map(sql.Literal, values)),
        )

    def position(self, result: Result) -> Any:
        """A row's keyset position, as a cursor keeps it."""
        values = [getattr(result, key) for key in self.keys]
        return values[0] if len(values) == 1 else values

    def valid_position(self, value: Any) -> bool:
        """A position decoded from a cursor: this order's keys, with values a row can have."""
        if len(self.keys) == 1:
            return type(value) is int and 0 <= value < 2**31
        return (
            isinstance(value, list)
            and len(value) == 3
            and value[0] in SENTIMENTS
            and type(value[1]) in (int, float)
            and math.isfinite(value[1])
            and -1 <= value[1] <= 1
            and type(value[2]) is int
            and 0 <= value[2] < 2**31
        )

    def listing(self, sentiment: str | None) -> str:
        return f"{self.name}:{sentiment}" if sentiment else self.name


FILE_ORDER = ResultOrder("row", ("row_number",))
ORDERS = {
    "row": FILE_ORDER,
    "compound": ResultOrder("compound", ("sentiment", "compound", "row_number")),
    "-compound": ResultOrder("-compound", ("sentiment", "compound", "row_number"), descending=True),
}


def _statement(order: ResultOrder, sentiment: str | None, after: Any, columns: str) -> sql.Composed:
    return sql.SQL(q("batch_results_ordered")).format(
        columns=sql.SQL(columns),
        filter=order.filter(sentiment),
        after=order.after(after),
        order=order.order(),
    )


def page(
    conn: psycopg.Connection, batch: Batch, order: ResultOrder, sentiment: str | None, after: Any, limit: int
) -> list[Result]:
    """Up to ``limit`` results in ``order`` (of one sentiment, if given) past the position ``after``."""
    with conn.cursor(row_factory=class_row(Result)) as cur:
        return cur.execute(
            _statement(order, sentiment, after, _RESULT_COLUMNS), {"batch_id": batch.id, "limit": limit}
        ).fetchall()


def locate(
    conn: psycopg.Connection, batch: Batch, order: ResultOrder, sentiment: str | None, skip: int
) -> Any:
    """The position after which the list's rows ``skip + 1, skip + 2, ...`` come: None for the start,
    :data:`END` past the end, :data:`BUILDING` when the checkpoints do not reach that deep yet."""
    if skip == 0:
        return None
    listing = order.listing(sentiment)
    nearest = _nearest(conn, batch, listing, skip)
    if skip - nearest.rank >= CHECKPOINT_EVERY and not nearest.complete:
        _extend_checkpoints(conn, batch, order, sentiment, listing, nearest.last_rank, nearest.last_position)
        nearest = _nearest(conn, batch, listing, skip)
        if skip - nearest.rank >= CHECKPOINT_EVERY and not nearest.complete:
            return BUILDING
    rank, position = nearest.rank, nearest.position
    if rank == skip:
        return position
    keys = ", ".join(order.keys)
    rows = conn.execute(
        _statement(order, sentiment, position, keys), {"batch_id": batch.id, "limit": skip - rank}
    ).fetchall()
    if len(rows) < skip - rank:
        return END
    last = list(rows[-1])
    return last[0] if len(last) == 1 else last


def _nearest(conn: psycopg.Connection, batch: Batch, listing: str, rank: int) -> Any:
    """The list's checkpoint at or before ``rank``, its last one, and whether they reach its end."""
    with conn.cursor(row_factory=namedtuple_row) as cur:
        params = {"batch_id": batch.id, "listing": listing, "rank": rank}
        return cur.execute(q("result_checkpoints_nearest"), params).fetchone()


def _extend_checkpoints(
    conn: psycopg.Connection,
    batch: Batch,
    order: ResultOrder,
    sentiment: str | None,
    listing: str,
    last_rank: int,
    last_position: Any,
) -> None:
    """Write the list's next checkpoints, reading at most SCAN_ROWS keys on from the last one."""
    keys = sql.SQL(", ").join(map(sql.Identifier, order.keys))
    # The position as JSON, as a cursor keeps it: the bare key, or the list of keys.
    if len(order.keys) == 1:
        position = sql.SQL("to_jsonb({})").format(keys)
    else:
        position = sql.SQL("jsonb_build_array({})").format(keys)
    statement = sql.SQL(q("result_checkpoints_extend")).format(
        keys=keys,
        order=order.order(),
        filter=order.filter(sentiment),
        after=order.after(last_position if last_rank else None),
        position=position,
    )
    params = {"batch_id": batch.id, "listing": listing, "base": last_rank, "scan": SCAN_ROWS}
    try:
        scanned = conn.execute(statement, {**params, "every": CHECKPOINT_EVERY}).fetchone()[0]
    except psycopg.errors.ForeignKeyViolation:  # the batch was removed under this request
        raise not_found(batch.public_id) from None
    if scanned < SCAN_ROWS:  # the list ended within the range read
        conn.execute(q("result_checkpoints_complete"), params)
