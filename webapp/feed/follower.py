"""One follower of one batch: where it is in the commit log, and what it is sent next.

The same follower runs in the hub (webapp.feed.hub, a socket without a thread) and, where no
hub can take the socket (the Flask test client, ``flask run``), in the request's own thread.
Either way each ``step`` is given the batch's state as read before the step, so the rows a step
reads cover every entry that state counts: once the state says nothing more will commit and
the follower has read through its last entry, ``end`` is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.batches import Batch
from core.batches.feed import CommittedChunk, FollowState, Position
from webapp.feed.framing import Framing
from webapp.replica import ExportSource

#: Reads committed chunks: (batch, after, at most this many) -> chunks in commit order.
ReadRows = Callable[[Batch, Position, int], list[CommittedChunk]]

#: Chunks one step reads (about 2,000 rows): a follower behind reads on as its socket drains.
STEP_CHUNKS = 20


def _progress_key(batch: Batch) -> tuple[object, ...]:
    """What a progress event reports: a new one goes out when this changes."""
    return (batch.status, batch.processed_count, batch.failed_count, batch.invalid_count, batch.total_count)


@dataclass(eq=False)
class Follower:
    """A stream's place in one batch's commit log."""

    batch_id: int
    framing: Framing
    source: ExportSource  # where its rows are read, as the caller (row-level security, replica)
    position: Position = field(default_factory=Position)
    #: Every row of the entries up to this one has been read.
    read_through: int = 0
    #: The last step read a full STEP_CHUNKS: more may be committed already.
    behind: bool = False
    #: ``end`` has been written (or the batch is gone): close once the rest is sent.
    ended: bool = False
    _progress: tuple[object, ...] | None = field(default=None, repr=False)

    def step(self, state: FollowState | None, read: ReadRows) -> bytes:
        """What to send now, the batch being in ``state`` (None: deleted, which ends the stream)."""
        if state is None:
            self.ended = True
            return b""
        out = bytearray()
        batch = state.batch
        key = _progress_key(batch)
        # First: a stream opens with the batch, and the rows that follow cover at least its counts.
        if key != self._progress:
            self._progress = key
            out += self.framing.progress(batch)
        if self.behind or self.read_through < batch.commit_seq:
            chunks = read(batch, self.position, STEP_CHUNKS)
            for chunk in chunks:
                if chunk.rows:
                    out += self.framing.rows(chunk)
                self.position = chunk.position
            self.behind = len(chunks) == STEP_CHUNKS
            if not self.behind:
                self.read_through = max(self.read_through, batch.commit_seq)
        if state.over and not self.behind and self.read_through >= batch.commit_seq:
            out += self.framing.end(batch)
            self.ended = True
        return bytes(out)
