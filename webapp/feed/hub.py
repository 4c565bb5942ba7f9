"""The hub: one thread per web worker that serves every open stream of that worker.

A view answers a follow request by handing its socket here (webapp.server.detach); from then on
the stream holds a socket and a buffer, never a request thread or a pool connection. Every
FOLLOW_POLL_SECONDS, while streams are open, one query reads the state of all their batches
(core.batches.feed.follow_states); a follower whose batch has new entries then reads them, as
its caller, on a pooled connection held for that read alone. Followers of one batch at one
position share that read. Writes never block: a follower reads more only once its buffer has
drained below LOW_WATER_BYTES, and a client that takes nothing for CLIENT_TIMEOUT is dropped
(it resumes with Last-Event-ID). A stream ends with its batch, after STREAM_MAX_SECONDS (SSE),
when its client goes, or when the worker stops: then what is buffered is sent, for
STOP_FLUSH_SECONDS at most, and the connection closed, always between two events.
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
from dataclasses import dataclass, field

import psycopg

from core.batches import Batch
from core.batches.feed import CommittedChunk, FollowState, Position, follow_states, rows_after
from core.clients import API_TOKEN_HOLDER
from webapp.db import WebPool
from webapp.feed.follower import Follower

log = logging.getLogger(__name__)

#: A follower reads more rows only while less than this is waiting to be sent to it.
LOW_WATER_BYTES = 256 * 1024
#: An SSE stream silent this long gets a comment, so proxies keep it open.
IDLE_SECONDS = 15.0
#: How long a stopping worker goes on sending what its streams have buffered.
STOP_FLUSH_SECONDS = 2.0
SEND_BYTES = 256 * 1024


@dataclass(eq=False)
class Stream:
    """One open stream: its socket, what waits to be sent, its follower."""

    sock: socket.socket
    follower: Follower
    sse: bool
    closes_at: float | None  # STREAM_MAX_SECONDS after it opened (SSE only)
    out: bytearray = field(default_factory=bytearray)
    last_sent: float = field(default_factory=time.monotonic)
    state: FollowState | None = None
    polled: bool = False  # its batch's state has been read since it opened
    writing: bool = False  # registered for EVENT_WRITE: it has bytes the socket did not take yet


class Hub:
    """The streams of this worker process, and the thread that serves them."""

    def __init__(self, pool: WebPool, *, poll_seconds: float, write_timeout: float, max_streams: int) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.write_timeout = write_timeout
        self.max_streams = max_streams
        self._selector = selectors.DefaultSelector()
        self._wake_out, self._wake_in = socket.socketpair()
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_out, selectors.EVENT_READ, None)
        self._arrivals: list[Stream] = []
        self._lock = threading.Lock()
        self._streams: dict[socket.socket, Stream] = {}
        self._stopping_at: float | None = None
        self._next_poll = 0.0
        self._thread = threading.Thread(target=self._run, name="feed-hub", daemon=True)
        self._thread.start()

    # -- called from request threads ---------------------------------------------------
    def full(self) -> bool:
        """Whether MAX_STREAMS streams are open here (a new one is answered 503)."""
        with self._lock:
            return len(self._streams) + len(self._arrivals) >= self.max_streams

    def count(self) -> int:
        with self._lock:
            return len(self._streams) + len(self._arrivals)

    def take(self, sock: socket.socket, head: bytes, follower: Follower, max_seconds: float | None) -> None:
        """Serve ``sock`` (the hub's own, duplicated, descriptor) from now on: ``head`` first."""
        sock.setblocking(False)
        closes_at = None if max_seconds is None else time.monotonic() + max_seconds
        sse = follower.framing.content_type.startswith("text/event-stream")
        stream = Stream(sock, follower, sse, closes_at, bytearray(head + follower.framing.start()))
        with self._lock:
            self._arrivals.append(stream)
        self._wake()

    def stop(self) -> None:
        """Flush and close every stream, then end the thread (the worker is stopping)."""
        with self._lock:
            if self._stopping_at is None:
                self._stopping_at = time.monotonic() + STOP_FLUSH_SECONDS
        self._wake()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_in.send(b"\0")

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
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
            s.follower.behind and not s.follower.ended and len(s.out) < LOW_WATER_BYTES
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
                self._watch_writes(key.data)
        now = time.monotonic()
        if self._stopping_at is not None:
            return self._drain_to_stop(now)
        if self._streams and now >= self._next_poll:
            self._poll()
            self._next_poll = now + self.poll_seconds
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
            self._next_poll = 0.0  # a new stream's first state is read at once

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
        """The state of every followed batch, in one read."""
        ids = sorted({s.follower.batch_id for s in self._streams.values()})
        try:
            with self.pool.caller_connection(API_TOKEN_HOLDER) as conn:
                states = follow_states(conn, ids)
        except psycopg.Error as exc:  # the next poll tries again; the streams wait
            log.warning("reading the followed batches' state failed: %s", exc)
            return
        for stream in self._streams.values():
            stream.state = states.get(stream.follower.batch_id)
            stream.polled = True

    def _advance(self, now: float) -> None:
        shared: dict[tuple[object, ...], list[CommittedChunk]] = {}
        for stream in list(self._streams.values()):
            follower = stream.follower
            if stream.polled and not follower.ended and len(stream.out) < LOW_WATER_BYTES:
                try:
                    stream.out += follower.step(stream.state, self._reader(stream, shared))
                except psycopg.Error as exc:  # the client resumes from the last event it had
                    log.warning("a follower's read failed, its stream ends: %s", exc)
                    follower.ended = True
            if stream.closes_at is not None and now >= stream.closes_at and not follower.ended:
                follower.ended = True  # the client resumes with Last-Event-ID
            if stream.sse and not stream.out and now - stream.last_sent >= IDLE_SECONDS:
                stream.out += follower.framing.idle()
            if stream.out:
                self._send(stream)
            elif follower.ended:
                self._close(stream)
            if stream.sock in self._streams and stream.out and now - stream.last_sent > self.write_timeout:
                log.info("a follower read nothing for %g s, its stream is dropped", self.write_timeout)
                self._close(stream)
            self._watch_writes(stream)

    def _reader(self, stream: Stream, shared: dict) -> Callable[[Batch, Position, int], list[CommittedChunk]]:
        """Reads for ``stream``'s follower; followers as the same caller at the same place share one."""
        source = stream.follower.source

        def read(batch: Batch, after: Position, chunks: int) -> list[CommittedChunk]:
            key = (source.who, batch.id, batch.commit_seq, after, chunks)
            if key not in shared:
                with source.connection(batch) as conn:
                    shared[key] = rows_after(conn, batch, after, chunks)
            return shared[key]

        return read

    def _send(self, stream: Stream) -> None:
        while stream.out:
            try:
                sent = stream.sock.send(memoryview(stream.out)[:SEND_BYTES])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(stream)
                return
            del stream.out[:sent]
            stream.last_sent = time.monotonic()
        if stream.follower.ended:
            self._close(stream)

    def _watch_writes(self, stream: Stream) -> None:
        """Ask the selector for writability only while bytes wait: an idle socket is always writable."""
        wanted = bool(stream.out)
        if wanted != stream.writing and stream.sock in self._streams:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
            self._selector.modify(stream.sock, events, stream)
            stream.writing = wanted

    def _drain_to_stop(self, now: float) -> bool:
        for stream in list(self._streams.values()):
            if not stream.out or now >= self._stopping_at:  # type: ignore[operator]
                self._close(stream)
            else:
                self._send(stream)
                self._watch_writes(stream)
        return bool(self._streams)

    def _close(self, stream: Stream) -> None:
        if self._streams.pop(stream.sock, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(stream.sock)
        # Half-close, then drop what the client sent unread: a close over unread bytes would
        # reset the connection, and the client could lose the last events still in flight.
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
