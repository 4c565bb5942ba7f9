"""One open stream as the hub holds it: its socket, its follower, and the frames waiting to go."""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass, field

from core.clients import Caller
from webapp.feed.follower import Follower

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
    out: deque[memoryview] = field(default_factory=deque)
    queued: int = 0  # bytes in ``out``
    last_sent: float = field(default_factory=time.monotonic)
    writing: bool = False  # registered for EVENT_WRITE: bytes wait that the socket did not take

    def queue(self, frames: list[bytes]) -> None:
        """Queue frames, each one chunk of the body when it is chunked (empty ones are skipped:
        an empty chunk would end the body)."""
        for frame in frames:
            if frame:
                self._append((f"{len(frame):x}\r\n".encode(), frame, b"\r\n") if self.chunked else (frame,))

    def finish(self) -> None:
        """Queue the body's last chunk (when chunked): the stream is whole."""
        if self.chunked:
            self._append((b"0\r\n\r\n",))

    def _append(self, parts: tuple[bytes, ...]) -> None:
        for part in parts:
            self.out.append(memoryview(part))
            self.queued += len(part)


def first(buffers: deque[memoryview], count: int) -> list[memoryview]:
    """The first ``count`` buffers (fewer if there are not as many), for one sendmsg."""
    return [buffers[index] for index in range(min(count, len(buffers)))]
