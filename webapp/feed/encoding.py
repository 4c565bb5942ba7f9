"""How one stream's frames become the bytes of its body: as they are, or one zlib stream.

A deflated stream (``Content-Encoding: deflate``, offered to clients that accept it) sends the
zlib header before its first frame, each frame's deflated piece, shared with the other streams
where the frame is (webapp.feed.frames), and, only once the stream is whole, the deflate data's
last block and the Adler-32 of all it carried, combined piece by piece as they were sent.
"""

from __future__ import annotations

from typing import Protocol

from webapp.feed.compression import LAST_BLOCK, ZLIB_HEADER, adler32_combine, deflate
from webapp.feed.frames import Frame, SharedFrame


class Encoder(Protocol):
    """One stream's encoding."""

    content_encoding: str | None  # the Content-Encoding it answers with (None: identity)

    def encode(self, frame: Frame) -> bytes: ...
    def end(self) -> bytes: ...


class Identity:
    """The frames as they are."""

    content_encoding = None

    def encode(self, frame: Frame) -> bytes:
        return frame.raw if isinstance(frame, SharedFrame) else frame

    def end(self) -> bytes:
        return b""


class Deflate:
    """One stream's zlib stream: the header before its first frame, the checksum after its last."""

    content_encoding = "deflate"

    def __init__(self) -> None:
        self.adler = 1  # Adler-32 of nothing
        self._started = False

    def encode(self, frame: Frame) -> bytes:
        piece = frame.piece if isinstance(frame, SharedFrame) else deflate(frame)
        self.adler = adler32_combine(self.adler, piece.adler, piece.size)
        if self._started:
            return piece.data
        self._started = True
        return ZLIB_HEADER + piece.data

    def end(self) -> bytes:
        """The zlib stream's end: only a stream that is whole gets it."""
        head = b"" if self._started else ZLIB_HEADER
        self._started = True
        return head + LAST_BLOCK + self.adler.to_bytes(4, "big")


def encoder_for(accepts_deflate: bool) -> Encoder:
    return Deflate() if accepts_deflate else Identity()
