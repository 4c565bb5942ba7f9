"""One open stream as the hub holds it: its socket, its follower, and the bytes waiting to go.

Each frame is encoded (as it is, or deflated: webapp.feed.compression) and, over HTTP/1.1, sent
as one chunk of a chunked body. A whole stream ends with its encoding's end and the body's last
chunk; a cut one has neither (over HTTP/1.0 the body then ends at the close).
"""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass, field

from core.clients import Caller
from webapp.feed.encoding import Encoder
from webapp.feed.follower import Follower
from webapp.feed.frames import Frame

#: Buffers handed to one sendmsg.
SEND_BUFFERS = 64


@dataclass(eq=False)
class Stream:
    """One open stream: its socket, what waits to be sent, its follower."""

    sock: socket.socket
    follower: Follower
    who: Caller
    sse: bool
    chunked: bool  # HTTP/1.1: each frame goes as one chunk of the body
    closes_at: float | None  # STREAM_MAX_SECONDS after it opened (SSE only)
    encoder: Encoder  # the body's Content-Encoding: frames as they are, or deflated
    out: deque[memoryview] = field(default_factory=deque)
    queued: int = 0  # bytes in ``out``
    last_sent: float = field(default_factory=time.monotonic)
    writing: bool = False  # registered for EVENT_WRITE: bytes wait that the socket did not take

    def queue(self, frames: list[Frame]) -> None:
        """Queue frames, encoded, each one chunk of the body when it is chunked (empty ones are
        skipped: an empty chunk would end the body)."""
        for frame in frames:
            if frame:
                self._chunk(self.encoder.encode(frame))

    def finish(self) -> None:
        """Queue the encoding's end, then the body's last chunk (when chunked): the stream is whole."""
        self._chunk(self.encoder.end())
        if self.chunked:
            self._append((b"0\r\n\r\n",))

    def _chunk(self, data: bytes) -> None:
        if data:
            self._append((f"{len(data):x}\r\n".encode(), data, b"\r\n") if self.chunked else (data,))

    def _append(self, parts: tuple[bytes, ...]) -> None:
        for part in parts:
            self.out.append(memoryview(part))
            self.queued += len(part)


def first(buffers: deque[memoryview], count: int) -> list[memoryview]:
    """The first ``count`` buffers (fewer if there are not as many), for one sendmsg."""
    return [buffers[index] for index in range(min(count, len(buffers)))]
