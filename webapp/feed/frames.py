"""Frames shared by many streams: a chunk's rows, made once, and runs of them sent as one.

A follower's step yields frames: its own bytes (its end) or a :class:`SharedFrame`, the frame of
a committed chunk or of the batch's progress as the last poll read it, which every follower of
the batch sends alike (and the SSE retry and keep-alive lines, which every stream does).
Followers that keep up with a batch step together, each poll, over the same new chunks:
:class:`Runs` gives them one frame for all those chunks, made by the first and reused by the
rest during that turn of the hub, so that each stream queues, encodes and sends one buffer a
step, not one a chunk. A shared frame's deflated piece (webapp.feed.compression) is made the
first time a compressed stream needs it, and a run's is joined from its frames' pieces.
"""

from __future__ import annotations

from webapp.feed.compression import Piece, deflate, joined


class SharedFrame:
    """A frame many streams send: one frame's bytes, or the frames of a run one after the other."""

    __slots__ = ("_parts", "_piece", "_raw", "_size")

    def __init__(self, raw: bytes = b"", parts: tuple[SharedFrame, ...] = ()) -> None:
        self._raw: bytes | None = None if parts else raw
        self._parts = parts
        self._piece: Piece | None = None
        # Asked of every frame each stream queues: counted once.
        self._size = sum(part._size for part in parts) if parts else len(raw)

    def __len__(self) -> int:
        return self._size

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = b"".join(part.raw for part in self._parts)
        return self._raw

    @property
    def piece(self) -> Piece:
        if self._piece is None:
            self._piece = joined(part.piece for part in self._parts) if self._parts else deflate(self.raw)
        return self._piece


#: What a follower sends: its own bytes, or a frame shared with other streams.
Frame = bytes | SharedFrame


class Runs:
    """The runs of shared frames made during one turn of the hub, for every stream to reuse."""

    def __init__(self) -> None:
        # Keyed by the frames' identities; each entry holds the frames too, so that no identity
        # is reused while the entry lives.
        self._made: dict[tuple[int, ...], tuple[tuple[SharedFrame, ...], SharedFrame]] = {}

    def clear(self) -> None:
        self._made.clear()

    def join(self, frames: list[Frame]) -> list[Frame]:
        """``frames`` with each stretch of two or more shared frames as one shared frame."""
        out: list[Frame] = []
        stretch: list[SharedFrame] = []
        for frame in [*frames, b""]:
            if isinstance(frame, SharedFrame):
                stretch.append(frame)
                continue
            if len(stretch) > 1:
                out.append(self._run(tuple(stretch)))
            else:
                out += stretch
            stretch = []
            if frame:
                out.append(frame)
        return out

    def _run(self, parts: tuple[SharedFrame, ...]) -> SharedFrame:
        key = tuple(map(id, parts))
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = (parts, SharedFrame(parts=parts))
        return made[1]
