"""How a follower's stream is written: Server-Sent Events or NDJSON, event by event.

SSE (``text/event-stream``): ``progress`` events carry the batch as ``GET /batch/<id>`` shows it,
one ``rows`` event per committed chunk with the chunk's position as its ``id:`` (what a client
sends back as ``Last-Event-ID``), ``end`` with the final batch; comments keep idle connections
open through proxies. NDJSON: the committed rows alone, one ``results.ndjson`` line each.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from core.batches import Batch
from core.batches.feed import CommittedChunk, FollowState
from webapp.feed.frames import Frame, SharedFrame

#: How long an EventSource waits before it reconnects after the stream ends without ``end``.
RETRY_MILLISECONDS = 1000

#: The frames every SSE stream sends alike.
_SSE_START = SharedFrame(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
_SSE_IDLE = SharedFrame(b": keep-alive\n\n")


def _json(value: Any) -> str:
    # A batch's JSON (progress, end) in ASCII, on one line; rows come as PostgreSQL wrote them.
    return json.dumps(value, separators=(",", ":"))


class Framing(Protocol):
    """One stream format."""

    content_type: str
    export: bool  # its rows are read as results.ndjson lines (else as results-page items)

    def start(self) -> Frame: ...
    def progress(self, state: FollowState) -> Frame: ...
    def rows(self, chunk: CommittedChunk) -> Frame: ...
    def end(self, batch: Batch) -> Frame: ...
    def idle(self) -> Frame: ...


class ServerSentEvents:
    """``text/event-stream``, as the browser's EventSource and curl read it."""

    content_type = "text/event-stream; charset=utf-8"
    export = False

    def start(self) -> Frame:
        return _SSE_START

    def progress(self, state: FollowState) -> Frame:
        frame = state.frames.get("sse")
        if frame is None:
            frame = state.frames["sse"] = SharedFrame(self._event("progress", state.batch))
        return frame

    @staticmethod
    def _event(name: str, batch: Batch) -> bytes:
        return f"event: {name}\ndata: {_json(batch.to_json())}\n\n".encode()

    def rows(self, chunk: CommittedChunk) -> Frame:
        frame = chunk.frames.get("sse")
        if frame is None:
            # The rows' JSON escapes CR and LF (SSE's only line ends), so the data stays one line.
            head = f'event: rows\nid: {chunk.position}\ndata: {{"rows":['.encode()
            frame = SharedFrame(b"".join((head, chunk.json, b"]}\n\n")))
            chunk.frames["sse"] = frame
        return frame

    def end(self, batch: Batch) -> bytes:
        return self._event("end", batch)

    def idle(self) -> Frame:
        return _SSE_IDLE


class JsonLines:
    """``application/x-ndjson``: the rows alone, as the ``results.ndjson`` download writes them."""

    content_type = "application/x-ndjson"
    export = True

    def start(self) -> bytes:
        return b""

    def progress(self, state: FollowState) -> bytes:
        return b""

    def rows(self, chunk: CommittedChunk) -> Frame:
        frame = chunk.frames.get("ndjson")
        if frame is None:
            frame = SharedFrame(chunk.json + b"\n") if chunk.rows else b""
            chunk.frames["ndjson"] = frame
        return frame

    def end(self, batch: Batch) -> bytes:
        return b""

    def idle(self) -> bytes:
        return b""
