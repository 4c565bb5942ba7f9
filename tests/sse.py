"""A small Server-Sent Events reader for the tests: one stream over http.client, event by event,
inflated as it comes when the server deflated it (``Accept-Encoding: deflate`` in ``headers``)."""

from __future__ import annotations

import http.client
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Event:
    name: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


class Stream:
    """``GET url`` as text/event-stream; iterate for its events, ``close`` to hang up."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.cut = False
        self._buffer = b""
        deflated = self.headers.get("Content-Encoding") == "deflate"
        self.inflater = zlib.decompressobj() if deflated else None  # checks the Adler-32 at the end

    def __iter__(self) -> Iterator[Event]:
        name, data, event_id = "message", [], None
        while True:
            line = self._line()
            if not line:
                return  # the body ended: whole if chunked (else ``cut`` says so)
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if data:
                    yield Event(name, "\n".join(data), event_id)
                name, data, event_id = "message", [], None
            elif text.startswith(":"):
                continue
            else:
                field, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value

    def _line(self) -> bytes:
        """The next line of the body; b"" at its end. read1, not readline: http.client's readline
        takes a chunked body cut short for one that ended."""
        while b"\n" not in self._buffer:
            try:
                data = self.response.read1(65536)
            except (http.client.IncompleteRead, OSError):
                data, self.cut = b"", True  # closed before the body's last chunk
            if not data:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += self.inflater.decompress(data) if self.inflater else data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    @property
    def inflated_whole(self) -> bool:
        """A deflated body reached the zlib stream's end, its checksum right, and nothing after."""
        return self.inflater is not None and self.inflater.eof and not self.inflater.unused_data

    def body(self) -> bytes:
        data = self.response.read()
        return zlib.decompress(data) if self.inflater else data

    def close(self) -> None:
        self.response.close()  # it holds the socket too: both go, or the connection stays open
        self.conn.close()
