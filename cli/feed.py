"""A batch's live feed, ``GET /batch/<id>/events``: Server-Sent Events read, parsed and resumed.

The service sends ``progress`` events (the batch as ``GET /batch/<id>`` shows
it), one ``rows`` event per committed chunk (``{"rows": [...]}``, each with an
``id:``) and, once the batch is final, ``end`` (the final batch), after which
it closes. A stream may also end before that: the server's STREAM_MAX_SECONDS,
a restart, a dropped connection, a 503 with Retry-After. :func:`events` then
connects again with ``Last-Event-ID``, the id of the last event it handed out,
and the service sends what comes after it; an event cut off by the end of a
stream was never handed out, so it comes whole on the next one. Every event
therefore reaches the caller once, however many connections it takes.

:class:`EventParser` is the event-stream format as HTML defines it: lines end
in CRLF, LF or CR (a CRLF may be split between two reads), ``data:`` lines join
with newlines, ``:`` starts a comment, ``id:`` sets the last event id (kept
from one event to the next), ``retry:`` the reconnection delay in ms, and a
blank line dispatches the event. The stream is asked for deflated, and inflated as it
comes: rows' JSON shrinks about four times. Standard library only.
"""

from __future__ import annotations

import http.client
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from cli.service import ATTEMPTS, MAX_WAIT, Service, ServiceError

BLOCK = 64 * 1024
#: Milliseconds before connecting again when the service has not said (``retry:``).
DEFAULT_RETRY_MS = 1000
#: Seconds a stream may stay silent: the service sends a comment every 15 s when idle.
STREAM_TIMEOUT = 60.0
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One dispatched event: its type (``message`` when not named), its data, and the last event
    id as of this event (its own ``id:``, else the one before)."""

    type: str
    data: str
    id: str


class EventParser:
    """Bytes of one event stream in, events out, in pieces of any size (:meth:`feed`)."""

    def __init__(self, last_id: str = "") -> None:
        self.last_id = last_id
        #: The reconnection delay the stream asked for, in ms (None while it has not).
        self.retry: int | None = None
        self._id = last_id
        self._type = ""
        self._data: list[str] = []
        self._line = bytearray()
        self._after_cr = False  # the last piece ended in CR: an LF first in the next ends no line
        self._first = True

    def feed(self, piece: bytes) -> list[Event]:
        """The events that ``piece`` completes."""
        if self._after_cr and piece.startswith(b"\n"):
            piece = piece[1:]
        self._after_cr = False
        events: list[Event] = []
        start = 0
        for end in _LINE_END.finditer(piece):
            self._line += piece[start : end.start()]
            start = end.end()
            if end.group() == b"\r" and start == len(piece):
                self._after_cr = True
            event = self._take(self._line.decode("utf-8", "replace"))
            self._line.clear()
            if event is not None:
                events.append(event)
        self._line += piece[start:]
        return events

    def _take(self, line: str) -> Event | None:
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keep-alives
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_id = self._id
        kind, data = self._type or "message", self._data
        self._type, self._data = "", []
        return Event(kind, "\n".join(data), self.last_id) if data else None


def events(
    service: Service, batch_id: str, last_id: str = "", *, say: Callable[[str], None] | None = None
) -> Iterator[Event]:
    """Every event of the batch's feed after ``last_id`` (from its start when empty), over as many
    connections as it takes, up to and including ``end``. Raises :class:`ServiceError` when the
    service refuses (after Service's retries), or after ATTEMPTS streams in a row brought nothing."""
    path = f"/batch/{quote(batch_id, safe='')}/events"
    say = say or service.say
    retry_ms = DEFAULT_RETRY_MS
    fruitless = 0  # streams in a row that ended without an event
    while True:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "deflate"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        answer = service.request("GET", path, headers=headers, timeout=STREAM_TIMEOUT)
        parser = EventParser(last_id)
        why, fruitful = "", False
        try:
            kind = answer.headers.get("Content-Type", "")
            if not kind.startswith("text/event-stream"):
                raise ServiceError(answer.status, f"{path} answered {kind or 'no Content-Type'}, not events")
            deflated = answer.headers.get("Content-Encoding") == "deflate"
            inflater = zlib.decompressobj() if deflated else None
            while piece := answer.read1(BLOCK):
                for event in parser.feed(inflater.decompress(piece) if inflater else piece):
                    fruitful = True
                    yield event
                    if event.type == "end":
                        return
        except (OSError, http.client.HTTPException, zlib.error) as exc:
            why = f"the stream broke ({type(exc).__name__})"
        finally:
            answer.close()
        # Only dispatched events move it: one the end cut off comes again, whole.
        last_id = parser.last_id
        retry_ms = parser.retry if parser.retry is not None else retry_ms
        fruitless = 0 if fruitful else fruitless + 1
        if fruitless >= ATTEMPTS:
            raise ServiceError(None, f"{path} ended {fruitless} times in a row before any event")
        wait = min(retry_ms / 1000 * 2 ** max(fruitless - 1, 0), MAX_WAIT)
        if why or fruitless:
            say(f"{why or 'the stream ended'} before the batch did; reconnecting in {wait:g} s")
        time.sleep(wait)
