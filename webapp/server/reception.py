"""One request as the worker's event loop receives it, before a thread may take it.

:class:`Reception` collects the head and the start of the body, and says when a thread may take
over (:mod:`webapp.server.worker`): once the whole head is in, and the whole body or its first
``PREFETCH_BYTES``; a chunked body is whole once its last chunk and trailers are in. It reads only
the fields that decide this (Content-Length, Transfer-Encoding, Expect); gunicorn's parser reads
the request properly afterwards. A Content-Length gunicorn would refuse, or two of them, make the
request ``"malformed"`` and the loop answers 400 itself, so no thread waits on a body whose length
the loop could not tell; a Transfer-Encoding gunicorn refuses is handed over at once (gunicorn
refuses it before reading any body).
"""

from __future__ import annotations

from typing import Literal

#: Body bytes received in the loop before a thread takes the request.
PREFETCH_BYTES = 64 * 1024
#: A head longer than this is refused in the loop (431).
HEAD_LIMIT = 64 * 1024

State = Literal["wait", "ready", "head-too-large", "malformed"]


class Reception:
    """The bytes of one request so far, and when they came."""

    head_limit = HEAD_LIMIT

    def __init__(self, started: float, buffered: bytes = b"") -> None:
        self.started = self.last = started
        self.buffer = bytearray(buffered)
        self.received = len(buffered)
        self.head_end = -1  # where the body starts in the buffer, once the head is complete
        self.body_length: int | None = None  # Content-Length, when given
        self.chunks: _ChunkScanner | None = None  # for a chunked body
        self.expects_continue = False
        self.malformed = False  # a Content-Length gunicorn would refuse, or two
        self._scanned = 0  # where the search for the head's end resumes

    @property
    def head_complete(self) -> bool:
        return self.head_end >= 0

    def add(self, data: bytes, now: float) -> None:
        self.buffer += data
        self.received += len(data)
        self.last = now

    def deadline(self, timeout: float, min_rate: float) -> float:
        """When the client is cut off unless more arrives: ``timeout`` s of silence, or an average
        below ``min_rate`` bytes/s once ``timeout`` s have passed."""
        return min(self.last + timeout, self.started + timeout + self.received / min_rate)

    def state(self) -> State:
        if self.head_end < 0:
            end = self.buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(self.buffer)
                return "head-too-large" if len(self.buffer) > HEAD_LIMIT else "wait"
            if end > HEAD_LIMIT:
                return "head-too-large"
            self.head_end = end + 4
            self._read_head(bytes(self.buffer[:end]))
        if self.malformed:
            return "malformed"
        body = len(self.buffer) - self.head_end
        if body >= PREFETCH_BYTES:
            return "ready"
        if self.chunks is not None:
            return "ready" if self.chunks.complete(self.buffer, self.head_end) else "wait"
        if self.body_length is not None:
            return "ready" if body >= self.body_length else "wait"
        return "ready"

    def wants_continue(self) -> bool:
        """True once, when the client waits for ``100 Continue`` before it sends the body."""
        if self.expects_continue and self.head_complete and len(self.buffer) == self.head_end:
            self.expects_continue = False
            return True
        return False

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            # Blanks around a value are spaces and tabs only, as gunicorn's parser has them.
            name, value = name.strip(b" \t").lower(), value.strip(b" \t").lower()
            if name == b"content-length":
                length = content_length(value)
                if length is None or self.body_length is not None:
                    self.malformed = True
                self.body_length = length
            elif name == b"transfer-encoding":
                self.chunks = _ChunkScanner() if value.endswith(b"chunked") else None
                if self.chunks is None:
                    self.body_length = 0  # gunicorn refuses other codings: hand over at once
            elif name == b"expect":
                self.expects_continue = http11 and value == b"100-continue"
        if self.malformed:
            self.chunks = None
        elif self.chunks is not None and self.body_length is not None:
            self.chunks, self.body_length = None, 0  # ambiguous framing: gunicorn refuses it


def content_length(value: bytes) -> int | None:
    """A Content-Length value as gunicorn reads it (``isnumeric()``, then ``int()``): any number
    of ASCII digits, leading zeros allowed; None for anything else (gunicorn refuses it)."""
    if value and value.isdigit():  # bytes.isdigit() is ASCII digits only
        try:
            return int(value)
        except ValueError:  # past Python's limit on digits (4300): gunicorn refuses it too
            return None
    return None


class _ChunkScanner:
    """Finds the end of a chunked body as its bytes arrive (resuming where it stopped)."""

    def __init__(self) -> None:
        self.position: int | None = None  # start of the next chunk-size (or trailer) line
        self.trailers = False

    def complete(self, buffer: bytearray, start: int) -> bool:
        position = start if self.position is None else self.position
        while True:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                break
            if self.trailers:
                if end == position:
                    return True  # the empty line after the trailers
                position = end + 2
                continue
            size_field = bytes(buffer[position:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                return True  # malformed: gunicorn answers it
            if size == 0:
                self.trailers = True
                position = end + 2
                continue
            following = end + 2 + size + 2
            if following > len(buffer):
                break
            position = following
        self.position = position
        return False
