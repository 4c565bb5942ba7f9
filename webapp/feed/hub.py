"""The hub: one thread per web worker that serves every open stream of that worker.

A view answers a follow request by handing its socket here (webapp.server.detach); from then on
the stream holds a socket and a queue of frames, never a request thread or a pool connection.
Every FOLLOW_POLL_SECONDS, while streams are open, one query reads the state of all their
batches; a state is acted on once the WAL is flushed past it (core.batches.feed.DurableStates).
A follower whose batch has new entries then reads them through the batch's recent chunks
(webapp.feed.recent), on a pooled connection held for that read alone; frames, and their deflated
bytes (webapp.feed.compression), are made once and shared. Writes never block: a follower reads
more only once less than LOW_WATER_BYTES waits for its client. A client that takes nothing for
CLIENT_TIMEOUT is dropped, and an SSE stream is closed CLIENT_TIMEOUT after STREAM_MAX_SECONDS
whatever it still holds (its client resumes with Last-Event-ID). Only a stream that reached its
batch's end gets the body's end (webapp.feed.stream): a client can tell a cut stream from a whole
one. When the worker stops, what is queued is sent, for STOP_FLUSH_SECONDS at most. The thread
runs STREAM_NICE steps below the request threads (webapp.feed.priority).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable

import psycopg

from core.batches import Batch
from core.batches.feed import CommittedChunk, DurableStates, FollowState, Position, poll
from core.clients import API_TOKEN_HOLDER, LOCAL_USER, Caller
from core.settings import Settings
from webapp.db import WebPool
from webapp.feed.encoding import Encoder
from webapp.feed.follower import Follower, reader
from webapp.feed.frames import Runs
from webapp.feed.priority import lower_this_thread
from webapp.feed.recent import Recent
from webapp.feed.stream import SEND_BUFFERS, Stream, first

log = logging.getLogger(__name__)

#: A follower reads more rows only while less than this waits to be sent to it.
LOW_WATER_BYTES = 256 * 1024
#: An SSE stream silent this long gets a comment, so proxies keep it open.
IDLE_SECONDS = 15.0
#: How long a stopping worker goes on sending what its streams have queued.
STOP_FLUSH_SECONDS = 2.0


class Hub:
    """The streams of this worker process, and the thread that serves them."""

    def __init__(self, pool: WebPool, config: Settings) -> None:
        self.pool, self.config = pool, config  # FOLLOW_POLL_SECONDS, CLIENT_TIMEOUT, MAX_STREAMS, STREAM_NICE
        self._selector = selectors.DefaultSelector()
        self._wake_out, self._wake_in = socket.socketpair()
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_out, selectors.EVENT_READ, None)
        self._arrivals: list[Stream] = []
        self._lock = threading.Lock()
        self._streams: dict[socket.socket, Stream] = {}
        self._durable = DurableStates()
        self._recent: dict[tuple[int, bool], Recent] = {}  # (batch id, export shape)
        self._runs = Runs()  # the followers that step together send each chunk of a step as one
        self._stopping_at: float | None = None
        self._next_poll = 0.0
        self._thread = threading.Thread(target=self._run, name="feed-hub", daemon=True)
        self._thread.start()

    # -- called from request threads ---------------------------------------------------
    def full(self, who: Caller) -> bool:
        """Whether another stream of ``who`` is refused (503): the worker stops, or is full, or
        ``who`` (a key, or API_TOKEN; not the one local user) holds half of MAX_STREAMS."""
        with self._lock:
            streams = [*self._streams.values(), *self._arrivals]
            mine = sum(stream.who == who for stream in streams)
            stopping = self._stopping_at is not None
        over_share = who != LOCAL_USER and mine >= max(1, self.config.max_streams // 2)
        return stopping or len(streams) >= self.config.max_streams or over_share

    def take(
        self,
        sock: socket.socket,
        chunked: bool,
        follower: Follower,
        who: Caller,
        max_seconds: float | None,
        encoder: Encoder,
    ) -> None:
        """Serve ``sock`` (the hub's own, duplicated, descriptor) from now on; its head is sent."""
        sock.setblocking(False)
        closes_at = None if max_seconds is None else time.monotonic() + max_seconds
        sse = follower.framing.content_type.startswith("text/event-stream")
        stream = Stream(sock, follower, who, sse, chunked, closes_at, encoder)
        stream.queue([follower.framing.start()])
        with self._lock:
            self._arrivals.append(stream)
        self._wake()

    def stop(self) -> None:
        """Flush and close every stream, then end the thread (the worker is stopping)."""
        with self._lock:
            self._stopping_at = self._stopping_at or time.monotonic() + STOP_FLUSH_SECONDS
        self._wake()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_in.send(b"\0")

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        lower_this_thread(self.config.stream_nice)
        while True:
            try:
                if not self._turn():
                    break
            except Exception:  # a bug here must not leave every stream hanging
                log.exception("the feed hub failed; its streams are closed")
                for stream in list(self._streams.values()):
                    self._close(stream)
        self._selector.close()

    def _turn(self) -> bool:
        """One turn of the loop; False once stopped and every stream is closed."""
        now = time.monotonic()
        urgent = any(
            s.follower.behind and not s.follower.ended and s.queued < LOW_WATER_BYTES
            for s in self._streams.values()
        )
        timeout = 0.0 if urgent else max(0.0, min(self._next_poll - now, IDLE_SECONDS))
        if self._stopping_at is not None:
            timeout = min(timeout, 0.05)
        for key, events in self._selector.select(timeout if self._streams or self._stopping_at else None):
            if key.data is None:
                self._admit()
            elif events & selectors.EVENT_READ:
                self._on_readable(key.data)
            if events & selectors.EVENT_WRITE and key.data is not None and key.data.sock in self._streams:
                self._send(key.data)
        now = time.monotonic()
        if self._stopping_at is not None:
            return self._drain_to_stop(now)
        if self._streams and now >= self._next_poll:
            self._poll()
            self._next_poll = now + self.config.follow_poll_seconds
        self._advance(now)
        return True

    def _admit(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_out.recv(4096):
                pass
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
            for stream in arrivals:
                self._streams[stream.sock] = stream
        for stream in arrivals:
            self._selector.register(stream.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, stream)
            stream.writing = True
        if arrivals:
            self._next_poll = 0.0  # a new stream's batch is read at once

    def _on_readable(self, stream: Stream) -> None:
        """A client sends nothing after its request; anything read is dropped, an end closes."""
        try:
            data = stream.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(stream)

    def _poll(self) -> None:
        """The state of every followed batch, in one read, as of the WAL flushed so far."""
        ids = sorted({s.follower.batch_id for s in self._streams.values()})
        try:
            with self.pool.caller_connection(API_TOKEN_HOLDER) as conn:
                self._durable.add(poll(conn, ids))
        except psycopg.Error as exc:  # the next poll tries again; the streams wait
            log.warning("reading the followed batches' state failed: %s", exc)
        followed = set(ids)
        self._recent = {key: kept for key, kept in self._recent.items() if key[0] in followed}

    def _state(self, stream: Stream) -> FollowState | bool | None:
        """The stream's batch as last seen durable; False until a durable poll has seen it at all."""
        batch_id = stream.follower.batch_id
        return self._durable.states.get(batch_id, None if self._durable.seen(batch_id) else False)

    def _advance(self, now: float) -> None:
        self._runs.clear()
        for stream in list(self._streams.values()):
            follower = stream.follower
            state = self._state(stream)
            if state is not False and not follower.ended and stream.queued < LOW_WATER_BYTES:
                try:
                    stream.queue(self._runs.join(follower.step(state, self._reader(stream))))  # type: ignore[arg-type]
                except psycopg.Error as exc:  # the client resumes from the last event it had
                    log.warning("a follower's read failed, its stream ends: %s", exc)
                    follower.ended = True
                if follower.complete:
                    stream.finish()
            if stream.closes_at is not None and not follower.ended and now >= stream.closes_at:
                follower.ended = True  # the client resumes with Last-Event-ID
            late = stream.closes_at is not None and now >= stream.closes_at + self.config.client_timeout
            stuck = stream.queued and now - stream.last_sent > self.config.client_timeout
            if late or stuck:
                log.info("a follower took too long to read its stream, which is dropped")
                self._close(stream)
                continue
            if stream.sse and not stream.queued and now - stream.last_sent >= IDLE_SECONDS:
                stream.queue([follower.framing.idle()])
            self._send(stream)

    def _reader(self, stream: Stream) -> Callable[[Batch, Position, int], list[CommittedChunk]]:
        """Reads for ``stream``'s follower, through its batch's recent chunks."""
        export = stream.follower.framing.export
        fetch = reader(stream.follower.source, export=export)
        # Kept apart per row shape: an NDJSON follower's chunks are read as export lines.
        recent = self._recent.setdefault((stream.follower.batch_id, export), Recent())
        return lambda batch, after, chunks: recent.read(batch, after, chunks, fetch)

    def _send(self, stream: Stream) -> None:
        """Send what the socket takes now; close a stream that ended once all of it is out."""
        while stream.out:
            try:
                sent = stream.sock.sendmsg(list(first(stream.out, SEND_BUFFERS)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(stream)
                return
            stream.queued -= sent
            stream.last_sent = time.monotonic()
            while sent:
                head = stream.out[0]
                if len(head) <= sent:
                    sent -= len(head)
                    stream.out.popleft()
                else:
                    stream.out[0], sent = head[sent:], 0
        if stream.follower.ended and not stream.out:
            self._close(stream)
            return
        wanted = bool(stream.out)
        if wanted != stream.writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
            self._selector.modify(stream.sock, events, stream)
            stream.writing = wanted

    def _drain_to_stop(self, now: float) -> bool:
        for stream in list(self._streams.values()):
            if not stream.out or now >= self._stopping_at:  # type: ignore[operator]
                self._close(stream)
            else:
                self._send(stream)
        return bool(self._streams)

    def _close(self, stream: Stream) -> None:
        if self._streams.pop(stream.sock, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(stream.sock)
        # Half-close, then drop what the client sent unread: a close over unread bytes would
        # reset the connection, and the client could lose the last frames still in flight.
        with contextlib.suppress(OSError):
            stream.sock.shutdown(socket.SHUT_WR)
            while stream.sock.recv(4096):
                pass
        stream.sock.close()


_hub: Hub | None = None
_hub_pid = 0
_hub_lock = threading.Lock()


def process_hub(make: Callable[[], Hub]) -> Hub:
    """This process's hub, made by ``make`` the first time (a forked worker makes its own)."""
    global _hub, _hub_pid
    with _hub_lock:
        if _hub is None or _hub_pid != os.getpid():
            _hub, _hub_pid = make(), os.getpid()
        return _hub


def stop_process_hub(join_seconds: float = 0.0) -> None:
    """Flush and close this process's streams, if it has a hub; wait up to ``join_seconds``."""
    with _hub_lock:
        hub = _hub if _hub_pid == os.getpid() else None
    if hub is not None:
        hub.stop()
        if join_seconds:
            hub.join(join_seconds)
