"""Results in any order at any depth: by file order within one sentiment, or by compound score.

Each :class:`ResultOrder` is one index range: file order is the primary key of
``batch_results``; the others are ranges of ``batch_result_keys``, a finished batch's
sort keys written on demand before the first listing that needs them is read
(:mod:`core.batches.sort_keys`), so scoring maintains no index for them. The
label follows from compound, so ``(sentiment, compound, row_number)`` is compound
order over the whole batch too; rows whose scoring failed have no keys. Page P of
these lists starts from the nearest checkpoint (:func:`locate`; at most
:data:`SCAN_ROWS` keys are read to write checkpoints per request, :data:`BUILDING`
past that). What clients see: docs/api.md, "Results".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, namedtuple_row

from core.batches.model import Batch
from core.batches.rows import SENTIMENTS, Result
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


@dataclass(frozen=True)
class ResultOrder:
    """One way to list a batch's results, as SQL pieces and a keyset position."""

    name: str  # as in ?order= (and in result_checkpoints.listing)
    keys: tuple[str, ...]  # the ORDER BY columns; the position is their values
    descending: bool = False

    def order(self, table: str | None = None) -> sql.Composable:
        """The ORDER BY list; its columns qualified by ``table`` when given."""
        direction = sql.SQL(" DESC" if self.descending else "")
        names = [sql.Identifier(table, k) if table else sql.Identifier(k) for k in self.keys]
        return sql.SQL(", ").join(sql.Composed([name, direction]) for name in names)

    def uses_keys(self, sentiment: str | None) -> bool:
        """Whether the list is a range of batch_result_keys (else of batch_results' primary key)."""
        return sentiment is not None or self.keys != ("row_number",)

    def source(self, sentiment: str | None) -> sql.Composable:
        return sql.Identifier("batch_result_keys" if self.uses_keys(sentiment) else "batch_results")

    def filter(self, sentiment: str | None) -> sql.Composable:
        if sentiment is not None:
            return sql.SQL("sentiment = {}").format(sql.Literal(sentiment))
        return sql.SQL("true")

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


def _statement(order: ResultOrder, sentiment: str | None, after: Any, name: str) -> sql.Composed:
    """``batch_results_ordered`` (whole rows) or ``batch_results_ordered_keys`` (the keys alone)."""
    return sql.SQL(q(name)).format(
        source=order.source(sentiment),
        keys=sql.SQL(", ").join(map(sql.Identifier, order.keys)),
        filter=order.filter(sentiment),
        after=order.after(after),
        order=order.order(),
        outer_order=order.order("k"),
    )


def page(
    conn: psycopg.Connection, batch: Batch, order: ResultOrder, sentiment: str | None, after: Any, limit: int
) -> list[Result]:
    """Up to ``limit`` results in ``order`` (of one sentiment, if given) past the position ``after``."""
    with conn.cursor(row_factory=class_row(Result)) as cur:
        statement = _statement(order, sentiment, after, "batch_results_ordered")
        return cur.execute(statement, {"batch_id": batch.id, "limit": limit}).fetchall()


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
    rows = conn.execute(
        _statement(order, sentiment, position, "batch_results_ordered_keys"),
        {"batch_id": batch.id, "limit": skip - rank},
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
        source=order.source(sentiment),
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
