"""A batch's results in commit order, for followers: positions in the commit log, and reading after one.

Each finish of a batch's chunks is one entry of ``batch_commits``, numbered under the batch
row's lock (sql/queries/chunks.sql, chunks_finish), so entry numbers follow commit order and
every snapshot sees a gapless prefix of them. A reader's position is (entry, chunk within the
entry); the rows after it are exactly the rows it has not had, however finishes interleave.
A follower is done once the batch is final and no runner holds one of its chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

import psycopg
from psycopg.rows import class_row, kwargs_row

from core.batches.model import Batch, Result
from core.batches.store import batch_statement
from core.errors import InvalidInput
from core.queries import q

_POSITION = re.compile(r"(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})")
_MAX = 2**31 - 1
_RESULT_FIELDS = tuple(f.name for f in fields(Result))


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader is in a batch's commit log: after chunk ``chunk`` of entry ``seq``."""

    seq: int = 0
    chunk: int = 0

    def __str__(self) -> str:
        """The SSE event id of the chunk at this position: ``<seq>.<chunk>``."""
        return f"{self.seq}.{self.chunk}"

    @classmethod
    def parse(cls, text: str | None, name: str = "Last-Event-ID") -> Position:
        """A position from an event id the service sent (``<seq>.<chunk>``); empty or None: the start."""
        if not text:
            return cls()
        match = _POSITION.fullmatch(text.strip())
        if match is None or max(int(match[1]), int(match[2])) > _MAX:
            raise InvalidInput(
                "Invalid event id",
                f"{name} must be an event id this service sent, like 12.3; got {text[:40]!r}.",
                "invalid-event-id",
            )
        return cls(int(match[1]), int(match[2]))


@dataclass(frozen=True, eq=False)
class CommittedChunk:
    """One chunk's rows as one finish committed them; ``position`` is its event id."""

    position: Position
    rows: list[Result]
    #: The bytes each stream format made of it: followers that share a read encode it once.
    frames: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class FollowState:
    """A followed batch as the shared poll sees it."""

    batch: Batch
    in_hand: bool  # a runner still holds one of its chunks (only a cancelled batch can be final so)

    @property
    def over(self) -> bool:
        """Nothing more will commit: final, and no chunk in hand."""
        return self.batch.finished and not self.in_hand


def _committed_row(seq: int, chunk: int, **columns: Any) -> tuple[Position, Result | None]:
    position = Position(seq, chunk)
    if columns["row_number"] is None:  # a chunk none of whose rows are left
        return position, None
    return position, Result(**{name: columns[name] for name in _RESULT_FIELDS})


def rows_after(conn: psycopg.Connection, batch: Batch, after: Position, chunks: int) -> list[CommittedChunk]:
    """At most ``chunks`` committed chunks after ``after``, in commit order, each with its rows in
    file order. Fewer than ``chunks``: the reader has caught up with what is committed."""
    params = {"batch_id": batch.id, "after_seq": after.seq, "after_chunk": after.chunk, "chunks": chunks}
    read: list[CommittedChunk] = []
    with conn.cursor(row_factory=kwargs_row(_committed_row)) as cur:
        for position, result in cur.execute(q("batch_commits_rows_after"), params):
            if not read or read[-1].position != position:
                read.append(CommittedChunk(position, []))
            if result is not None:
                read[-1].rows.append(result)
    return read


def follow_states(conn: psycopg.Connection, batch_ids: list[int]) -> dict[int, FollowState]:
    """The followed batches that still exist, by id, in one read (a deleted one is missing)."""
    with conn.cursor(row_factory=class_row(_StateRow)) as cur:
        rows = cur.execute(batch_statement("batch_commits_follow_state"), {"batch_ids": batch_ids})
        return {row.batch.id: FollowState(row.batch, row.in_hand) for row in rows}


class _StateRow:
    """A row of batch_commits_follow_state: the batch's columns and ``in_hand``."""

    def __init__(self, in_hand: bool, **columns: Any) -> None:
        self.batch = Batch(**columns)
        self.in_hand = in_hand
