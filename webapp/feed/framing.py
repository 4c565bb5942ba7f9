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
from core.batches.feed import CommittedChunk

#: How long an EventSource waits before it reconnects after the stream ends without ``end``.
RETRY_MILLISECONDS = 1000


def _json(value: Any) -> str:
    # A batch's JSON (progress, end) in ASCII, on one line; rows come as PostgreSQL wrote them.
    return json.dumps(value, separators=(",", ":"))


class Framing(Protocol):
    """One stream format."""

    content_type: str
    export: bool  # its rows are read as results.ndjson lines (else as results-page items)

    def start(self) -> bytes: ...
    def progress(self, batch: Batch) -> bytes: ...
    def rows(self, chunk: CommittedChunk) -> bytes: ...
    def end(self, batch: Batch) -> bytes: ...
    def idle(self) -> bytes: ...


class ServerSentEvents:
    """``text/event-stream``, as the browser's EventSource and curl read it."""

    content_type = "text/event-stream; charset=utf-8"
    export = False

    def start(self) -> bytes:
        return f"retry: {RETRY_MILLISECONDS}\n\n".encode()

    def progress(self, batch: Batch) -> bytes:
        return f"event: progress\ndata: {_json(batch.to_json())}\n\n".encode()

    def rows(self, chunk: CommittedChunk) -> bytes:
        frame = chunk.frames.get("sse")
        if frame is None:
            # The rows' JSON escapes CR and LF (SSE's only line ends), so the data stays one line.
            data = '{"rows":[' + chunk.json + "]}"
            frame = chunk.frames["sse"] = f"event: rows\nid: {chunk.position}\ndata: {data}\n\n".encode()
        return frame

    def end(self, batch: Batch) -> bytes:
        return f"event: end\ndata: {_json(batch.to_json())}\n\n".encode()

    def idle(self) -> bytes:
        return b": keep-alive\n\n"


class JsonLines:
    """``application/x-ndjson``: the rows alone, as the ``results.ndjson`` download writes them."""

    content_type = "application/x-ndjson"
    export = True

    def start(self) -> bytes:
        return b""

    def progress(self, batch: Batch) -> bytes:
        return b""

    def rows(self, chunk: CommittedChunk) -> bytes:
        frame = chunk.frames.get("ndjson")
        if frame is None:
            frame = chunk.frames["ndjson"] = (chunk.json + "\n").encode() if chunk.rows else b""
        return frame

    def end(self, batch: Batch) -> bytes:
        return b""

    def idle(self) -> bytes:
        return b""
