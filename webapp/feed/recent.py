"""The latest committed chunks of each followed batch, kept by the hub for all its followers.

Followers of one batch drift apart (each reads only as fast as its client takes the bytes), so
reads keyed by a follower's position would each go to the database. Instead the hub keeps the
batch's last KEEP_CHUNKS chunks as they were read: a follower anywhere among them is served from
memory, and the first one to need more reads on from the newest, for everyone. Only a follower
behind all of them (a replay from the start) reads alone. A batch's rows are read as the caller
of the follower that needed them: every follower of a batch was allowed to read it when its
stream opened.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from core.batches import Batch
from core.batches.feed import CommittedChunk, Position

#: Chunks kept per followed batch and row shape (about 40,000 rows), and at most this many
#: bytes of JSON and frames.
KEEP_CHUNKS = 400
KEEP_BYTES = 24_000_000
#: Chunks read at a time into what is kept, fewer where they would not fit half of KEEP_BYTES:
#: followers that keep up need one read a poll.
FETCH_CHUNKS = 100

#: Reads from the database: (batch, after, at most this many) -> chunks in commit order.
Fetch = Callable[[Batch, Position, int], list[CommittedChunk]]


class Recent:
    """One batch's latest chunks: every chunk after ``start``, contiguous, in commit order."""

    def __init__(self) -> None:
        self.start: Position | None = None  # None: nothing kept yet
        self.chunks: list[CommittedChunk] = []
        self.positions: list[Position] = []
        self.sizes: list[int] = []  # bytes kept per chunk: its JSON and its frame
        #: Every entry up to this one is kept (or was, before it was let go at the front).
        self.read_through = 0
        #: Bytes each chunk of the last read keeps, on average (0: nothing read yet).
        self.chunk_bytes = 0

    def read(self, batch: Batch, after: Position, limit: int, fetch: Fetch) -> list[CommittedChunk]:
        """At most ``limit`` chunks after ``after``; fewer only once all committed so far are given."""
        if self.start is not None and after < self.start:  # behind all that is kept: alone
            return fetch(batch, after, limit)
        # What is kept is read many chunks at a time, for this follower and those after it.
        wanted = self._wanted(limit)
        last = self.positions[-1] if self.positions else self.start
        if last is None or after > last:  # nothing kept yet, or ahead of it: keep from here
            found = fetch(batch, after, wanted)
            self.start, self.chunks, self.positions, self.sizes = after, [], [], []
            self._add(found, batch, wanted)
            return found[:limit]
        index = bisect_right(self.positions, after)
        served = self.chunks[index : index + limit]
        if len(served) < limit and self.read_through < batch.commit_seq:
            found = fetch(batch, last, wanted)
            # Served from what was read, not from what is kept after it: keeping the newest may let
            # go of chunks this follower has not had yet.
            served += found[: limit - len(served)]
            self._add(found, batch, wanted)
        return served

    def _wanted(self, limit: int) -> int:
        """FETCH_CHUNKS, or as many as fit half of KEEP_BYTES at the size of the last chunks read
        (``limit`` before any): a read of long rows holds no more than is kept, and what it
        keeps does not let go of the chunks it just read."""
        fits = KEEP_BYTES // 2 // self.chunk_bytes if self.chunk_bytes else 0
        return max(limit, min(FETCH_CHUNKS, fits))

    def _add(self, found: list[CommittedChunk], batch: Batch, limit: int) -> None:
        self.chunks += found
        self.positions += [chunk.position for chunk in found]
        # Each kept chunk holds its rows' JSON and, once sent, the frame made of it, and that
        # frame deflated (about a quarter of it).
        sizes = [len(chunk.json) * 9 // 4 for chunk in found]
        self.sizes += sizes
        if found:
            self.chunk_bytes = max(1, sum(sizes) // len(found))
        if len(found) < limit:  # caught up with every entry the batch's state counts
            self.read_through = max(self.read_through, batch.commit_seq)
        dropped = max(0, len(self.chunks) - KEEP_CHUNKS)
        kept = sum(self.sizes[dropped:])
        while kept > KEEP_BYTES and dropped < len(self.chunks) - 1:
            kept -= self.sizes[dropped]
            dropped += 1
        if dropped:
            self.start = self.positions[dropped - 1]
            del self.chunks[:dropped], self.positions[:dropped], self.sizes[:dropped]
