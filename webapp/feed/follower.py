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
from core.batches.feed import CommittedChunk, FollowState, Position, rows_after
from webapp.feed.frames import Frame
from webapp.feed.framing import Framing
from webapp.replica import ExportSource

#: Reads committed chunks: (batch, after, at most this many) -> chunks in commit order.
ReadRows = Callable[[Batch, Position, int], list[CommittedChunk]]

#: Chunks one step reads (about 2,000 rows): a follower behind reads on as its socket drains.
STEP_CHUNKS = 20
#: A step stops taking chunks once its frames pass this many bytes (at least one chunk a step).
STEP_BYTES = 256 * 1024


def reader(source: ExportSource, *, export: bool) -> ReadRows:
    """Reads from the database as ``source``'s caller, each read on a connection held for it alone;
    rows as results.ndjson lines with ``export``, else as results-page items."""

    def read(batch: Batch, after: Position, chunks: int) -> list[CommittedChunk]:
        with source.connection(batch, bulk=False) as conn:
            return rows_after(conn, batch, after, chunks, export=export)

    return read


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
    #: The last step stopped before what was committed: more may be waiting already.
    behind: bool = False
    #: Nothing more will be sent: close once the rest is out.
    ended: bool = False
    #: The batch's last row has been sent (with SSE, then ``end``): the stream ends whole.
    complete: bool = False
    _progress: tuple[object, ...] | None = field(default=None, repr=False)

    def step(self, state: FollowState | None, read: ReadRows) -> list[Frame]:
        """The frames to send now, the batch being in ``state`` (None: deleted, which ends the
        stream). Frames of rows are shared with every follower that read the same chunk."""
        if state is None:
            self.ended = True
            return []
        frames: list[Frame] = []
        batch = state.batch
        key = _progress_key(batch)
        # First: a stream opens with the batch, and the rows that follow cover at least its counts.
        if key != self._progress:
            self._progress = key
            frames.append(self.framing.progress(state))
        if self.behind or self.read_through < batch.commit_seq:
            chunks = read(batch, self.position, STEP_CHUNKS)
            size = 0
            for chunk in chunks:
                if size >= STEP_BYTES:
                    break
                if chunk.rows:
                    frames.append(self.framing.rows(chunk))
                    size += len(frames[-1])
                self.position = chunk.position
            self.behind = len(chunks) == STEP_CHUNKS or (
                bool(chunks) and self.position != chunks[-1].position
            )
            if not self.behind:
                self.read_through = max(self.read_through, batch.commit_seq)
        if state.over and not self.behind and self.read_through >= batch.commit_seq:
            frames.append(self.framing.end(batch))
            self.ended = self.complete = True
        return [frame for frame in frames if frame]
