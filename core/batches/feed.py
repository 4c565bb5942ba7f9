"""A batch's results in commit order, for followers: positions in the commit log, and reading after one.

Each finish of a batch's chunks is one entry of ``batch_commits``, numbered under the batch
row's lock (sql/queries/chunks.sql, chunks_finish), so entry numbers follow commit order and
every snapshot sees a gapless prefix of them. A reader's position is (entry, chunk within the
entry); the rows after it are exactly the rows it has not had, however finishes interleave.
A follower is done once the batch is final and no runner holds one of its chunks. A chunk's
rows come as JSON that PostgreSQL writes, so a follower's rows cost no Python step per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.rows import class_row, namedtuple_row

from core.batches.model import Batch
from core.batches.store import batch_statement
from core.errors import InvalidInput
from core.queries import q

_POSITION = re.compile(r"(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})")
_MAX = 2**31 - 1


class Position(NamedTuple):
    """Where a reader is in a batch's commit log: after chunk ``chunk`` of entry ``seq``. A tuple,
    so that the hub's many comparisons of positions (bisecting what it keeps) run in C."""

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
    rows: int  # how many (0: none is left, the chunk only moves the position on)
    #: Its rows' JSON in UTF-8, written by PostgreSQL: results-page items joined by commas, or
    #: with ``export`` results.ndjson lines joined by newlines (:func:`rows_after`).
    json: bytes
    #: The frame each stream format made of it (webapp.feed.framing's, opaque here): followers
    #: that share a read encode it once.
    frames: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class FollowState:
    """A followed batch as the shared poll sees it."""

    batch: Batch
    in_hand: bool  # a runner still holds one of its chunks (only a cancelled batch can be final so)
    #: The frame each stream format made of its progress (webapp.feed.framing's, opaque here):
    #: every follower of the batch is given this same state by a poll, and encodes it once.
    frames: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def over(self) -> bool:
        """Nothing more will commit: final, and no chunk in hand."""
        return self.batch.finished and not self.in_hand


def rows_after(
    conn: psycopg.Connection, batch: Batch, after: Position, chunks: int, *, export: bool = False
) -> list[CommittedChunk]:
    """At most ``chunks`` committed chunks after ``after``, in commit order, each with its rows in
    file order: as results-page items, or with ``export`` as results.ndjson lines. Fewer than
    ``chunks``: the reader has caught up with what is committed."""
    params = {
        "batch_id": batch.id,
        "after_seq": after.seq,
        "after_chunk": after.chunk,
        "chunks": chunks,
        "export": export,
    }
    utf8 = conn.info.encoding == "utf-8"
    with conn.cursor(row_factory=namedtuple_row) as cur:
        if utf8:  # the JSON goes to the followers' sockets as it came, never decoded
            cur.adapters.register_loader("text", _AsSent)
        return [
            CommittedChunk(Position(row.seq, row.chunk), row.rows, row.json if utf8 else row.json.encode())
            for row in cur.execute(q("batch_commits_rows_after"), params)
        ]


class _AsSent(Loader):
    """A text value as the bytes the server sent, in the connection's encoding."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


@dataclass(frozen=True)
class Poll:
    """One read of the followed batches' states, and where the WAL stood just after it."""

    asked: frozenset[int]  # the batch ids read
    states: dict[int, FollowState]  # by batch id; a deleted batch is missing
    written: int  # the WAL's insert position: every commit the states show lies before it
    flushed: int  # the WAL's flush position at that moment


def poll(conn: psycopg.Connection, batch_ids: list[int]) -> Poll:
    """The followed batches' states in one read, then the WAL's positions (on the primary)."""
    with conn.cursor(row_factory=class_row(_StateRow)) as cur:
        rows = cur.execute(batch_statement("batch_commits_follow_state"), {"batch_ids": batch_ids})
        states = {row.batch.id: FollowState(row.batch, row.in_hand) for row in rows}
    # After the states' statement: its snapshot's commits all lie before this insert position.
    written, flushed = conn.execute(q("batch_commits_wal_positions")).fetchone()  # type: ignore[misc]
    return Poll(frozenset(batch_ids), states, int(written), int(flushed))


class DurableStates:
    """Batch states handed on only once the WAL that made them is on disk.

    Runners commit with ``synchronous_commit = off``: a finish is visible before it is durable,
    and a crash then loses it, and the entry number it took goes to another finish after the
    restart. A follower served such a state could skip that finish's rows for good, or get the
    lost chunk twice. So each poll waits until a later one sees the WAL flushed past it (the WAL
    writer flushes within ``wal_writer_delay``, 200 ms by default).
    """

    def __init__(self) -> None:
        self._waiting: list[Poll] = []
        self._durable = Poll(frozenset(), {}, 0, 0)

    def add(self, polled: Poll) -> None:
        """Note ``polled``; its states are handed on once a later poll finds its WAL flushed."""
        self._waiting.append(polled)
        while self._waiting and self._waiting[0].written <= polled.flushed:
            self._durable = self._waiting.pop(0)

    @property
    def states(self) -> dict[int, FollowState]:
        """The newest durable states, by batch id."""
        return self._durable.states

    def seen(self, batch_id: int) -> bool:
        """Whether the newest durable poll read this batch (missing from ``states``: deleted)."""
        return batch_id in self._durable.asked


def complete(conn: psycopg.Connection, batch: Batch) -> bool:
    """Whether no more rows will be added: final, and (a cancelled batch) no chunk in a runner's hands."""
    if not batch.finished:
        return False
    return (
        batch.status != "cancelled"
        or not conn.execute(q("chunks_in_hand_of_batch"), {"batch_id": batch.id}).fetchone()[0]
    )  # type: ignore[index]


def check_resume(conn: psycopg.Connection, batch: Batch, after: Position) -> None:
    """InvalidInput unless ``after`` is the start or names a chunk of ``batch``'s commit log."""
    if after == Position():
        return
    if after.seq <= batch.commit_seq and after.chunk >= 1:
        params = {"batch_id": batch.id, "seq": after.seq}
        chunks = conn.execute(q("batch_commits_chunk_count"), params).fetchone()
        if chunks is not None and after.chunk <= chunks[0]:
            return
    raise InvalidInput(
        "Invalid event id",
        f"Event {after} names no chunk of this batch (its last commit is {batch.commit_seq}): "
        "send back an event id this batch's stream sent.",
        "invalid-event-id",
    )


class _StateRow:
    """A row of batch_commits_follow_state: the batch's columns and ``in_hand``."""

    def __init__(self, in_hand: bool, **columns: Any) -> None:
        self.batch = Batch(**columns)
        self.in_hand = in_hand
