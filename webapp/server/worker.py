"""gunicorn's threaded worker, with each request received by its event loop before a thread takes it.

``gthread`` gives a connection a thread at its first byte, and the thread then blocks, without a
timeout, until headers and body are in: a few clients stalled mid-request would hold every thread,
``/healthz`` included. Here the loop receives the head and the first ``PREFETCH_BYTES`` of the body
(or all of it) on a non-blocking socket first, so a slow client costs a socket and a small buffer,
never a thread, a pool connection or a transaction. The thread reads the rest through
:class:`ClientSocket`, within :class:`ClientLimits` (past them, a 408); each write must finish
within CLIENT_TIMEOUT, and a kept-alive connection's next request waits in the loop until earlier
answers have gone out. Closed connections linger in the loop, not in gunicorn's blocking close.
Plain HTTP/1.1 only; built on gunicorn 27's gthread internals, it refuses to load without them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import selectors
import socket
import struct
import termios
import time
from functools import partial
from typing import Any

from gunicorn.workers import gthread

from core.settings import Settings
from webapp.feed import hub as feed_hub
from webapp.problems import Problem, problem_response
from webapp.server.client_limits import ClientLimits, ClientSocket, ClientTimeout
from webapp.server.detach import Detaching
from webapp.server.reception import PREFETCH_BYTES, Reception

log = logging.getLogger(__name__)

if not all(
    hasattr(gthread.ThreadWorker, name)
    for name in ("enqueue_req", "handle", "handle_request", "finish_request", "murder_pending")
) or not hasattr(gthread, "_DEFER"):
    raise ImportError("webapp.server.worker needs gunicorn 27's gthread worker (enqueue_req, murder_pending)")

#: How long a closed connection lingers to drain what the client still sends.
LINGER_SECONDS = 2.0
#: One non-blocking read in the loop.
READ_BYTES = 64 * 1024
#: How long a stopping worker still receives requests (as gthread keeps its kept-alive connections).
STOP_GRACE_SECONDS = gthread.STOP_KEEPALIVE_LINGER
#: How often the loop looks again at connections whose earlier answers have not gone out yet.
DRAIN_POLL_SECONDS = 0.05
#: Linux's SIOCOUTQNSD: bytes written to a socket and not sent yet (the client's window is shut).
SIOCOUTQNSD = 0x894B

__all__ = ["PREFETCH_BYTES", "ClientLimits", "ClientSocket", "ClientTimeout", "ReceivingThreadWorker"]


def _problem_bytes(problem: Problem) -> bytes:
    """A whole HTTP answer (closing the connection) with the app's own problem+json."""
    response = problem_response(problem)
    fields = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    head = f"HTTP/1.1 {problem.status} {problem.title}\r\n{fields}Connection: close\r\n\r\n"
    return head.encode("latin-1") + response.get_data()


def _unsent(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that the kernel has not sent yet (0 if it cannot tell)."""
    for request in (SIOCOUTQNSD, termios.TIOCOUTQ):
        with contextlib.suppress(OSError):
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))[0]
    return 0


class ReceivingThreadWorker(gthread.ThreadWorker):
    """gthread, with requests received in the event loop (see the module's docstring)."""

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("webapp.server.worker serves plain HTTP: terminate TLS in front of it")
        if getattr(self.cfg, "http2_cleartext", "off") != "off":
            raise RuntimeError("webapp.server.worker serves HTTP/1.1 only: unset http2_cleartext")
        settings = Settings.from_env()
        self.limits = ClientLimits(settings.client_timeout, settings.min_upload_rate)
        self.receptions: dict[Any, Reception] = {}
        self.lingering: dict[socket.socket, float] = {}
        # Complete requests held back until earlier answers have gone out: (deadline, unsent).
        self.held: dict[Any, tuple[Reception, float, int]] = {}
        self.stopping_since: float | None = None
        self.detached: set[socket.socket] = set()  # connections handed to the feed hub
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = Detaching(self.wsgi, self.detached)

    def run(self) -> None:
        try:
            super().run()
        finally:
            feed_hub.stop_process_hub(join_seconds=feed_hub.STOP_FLUSH_SECONDS + 1)

    # -- the loop: receive, then hand over ---------------------------------------------
    def enqueue_req(self, conn: Any) -> None:
        """A connection with a request coming: receive it here before a thread takes it."""
        if "close" not in vars(conn):
            conn.close = partial(self._close, conn)
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        reception = Reception(time.monotonic(), buffered)
        conn.sock.setblocking(False)
        self.receptions[conn] = reception
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if buffered:
            self._advance(conn, reception)

    def _on_readable(self, conn: Any, _: object) -> None:
        reception = self.receptions[conn]
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            reception.add(data, time.monotonic())
            self._advance(conn, reception)
        elif reception.head_complete:
            self._dispatch(conn)  # cut short: the application sees where, and answers 400
        else:
            self._forget(conn)
            self.nr_conns -= 1
            gthread.TConn.close(conn)

    def _advance(self, conn: Any, reception: Reception) -> None:
        state = reception.state()
        if state == "ready":
            self._dispatch(conn)
        elif state == "head-too-large":
            detail = f"The request's head is longer than {reception.head_limit:,} bytes."
            self._refuse(conn, Problem(431, "Request Header Fields Too Large", detail, "head-too-large"))
        elif state == "malformed":
            detail = "The request's Content-Length is not a number of digits, or is given twice."
            self._refuse(conn, Problem(400, "Bad Request", detail, "invalid-content-length"))
        elif reception.wants_continue():
            self._send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, conn: Any) -> None:
        reception = self._forget(conn)
        unsent = _unsent(conn.sock)
        if unsent:  # the client does not read its answers: a thread would block writing the next
            self.held[conn] = (reception, time.monotonic() + self.limits.timeout, unsent)
            return
        self._hand_over(conn, reception)

    def _hand_over(self, conn: Any, reception: Reception) -> None:
        conn._reception = reception
        conn.data_ready = True
        super().enqueue_req(conn)

    def _check_held(self, now: float) -> None:
        """Hand over held requests whose earlier answers went out; drop clients that read nothing
        for CLIENT_TIMEOUT (or any still held when a stopping worker's grace is over)."""
        for conn, (reception, deadline, before) in list(self.held.items()):
            unsent = _unsent(conn.sock)
            if not unsent:
                del self.held[conn]
                self._hand_over(conn, reception)
            elif unsent < before:  # it reads, however slowly
                self.held[conn] = (reception, now + self.limits.timeout, unsent)
            elif now >= deadline or self._stop_grace_over(now):
                del self.held[conn]
                log.info(
                    "client %s read none of its answers for %g s, dropped", conn.client, self.limits.timeout
                )
                self.nr_conns -= 1
                gthread.TConn.close(conn)

    def _stop_grace_over(self, now: float) -> bool:
        return self.stopping_since is not None and now >= self.stopping_since + STOP_GRACE_SECONDS

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(min(timeout, DRAIN_POLL_SECONDS) if self.held else timeout)

    def _forget(self, conn: Any) -> Reception:
        self.poller.unregister(conn.sock)
        return self.receptions.pop(conn)

    def _refuse(self, conn: Any, problem: Problem) -> None:
        reception = self._forget(conn)
        log.info(
            "client %s cut off after %d bytes in %.1f s: %d %s",
            conn.client,
            reception.received,
            time.monotonic() - reception.started,
            problem.status,
            problem.slug,
        )
        self._send_quietly(conn.sock, _problem_bytes(problem))
        self.nr_conns -= 1
        conn.close(graceful=True)

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.send(data)

    def murder_pending(self) -> None:
        """Every turn of the loop: cut off late clients, hand over or drop held requests, end
        lingering closes. A stopping worker still receives for STOP_GRACE_SECONDS (requests
        complete by then are answered, with ``Connection: close``); it refuses the rest with 503."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self.stopping_since is None:
            self.stopping_since = now
            feed_hub.stop_process_hub()  # open streams end cleanly; their clients resume elsewhere
        self._check_held(now)
        for conn, reception in list(self.receptions.items()):
            if self._stop_grace_over(now):
                detail = "The server is restarting; send the request again."
                self._refuse(
                    conn, Problem(503, "Service Unavailable", detail, "stopping", {"Retry-After": "1"})
                )
            elif now >= reception.deadline(self.limits.timeout, self.limits.min_rate):
                silent = now - reception.last >= self.limits.timeout
                detail = self.limits.why(now - reception.started, reception.received, silent)
                self._refuse(conn, Problem(408, "Request Timeout", detail, "client-timeout"))
        for sock, deadline in list(self.lingering.items()):
            if now >= deadline:
                self._end_linger(sock)

    # -- the thread: read the rest within the limits --------------------------------
    def handle(self, conn: Any) -> Any:
        reception: Reception | None = vars(conn).pop("_reception", None)
        if reception is not None:
            conn.sock.setblocking(True)
            conn.init()
            unreader = conn.parser.unreader
            if not isinstance(unreader.sock, ClientSocket):
                unreader.sock = ClientSocket(conn.sock, self.limits)
            unreader.sock.begin(time.monotonic() - reception.started, reception.received)
            if reception.buffer:
                unreader.unread(bytes(reception.buffer))
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        conn.sock.settimeout(self.limits.timeout)  # each write must finish within CLIENT_TIMEOUT
        try:
            return super().handle_request(req, conn)
        except TimeoutError as exc:
            log.info("client %s too slow, connection dropped: %s", conn.client, exc)
            return False

    # -- closing without blocking the loop --------------------------------------------
    def _close(self, conn: Any, graceful: bool = False) -> None:
        """Close a connection; gracefully means half-close and drain in the loop, never waiting. A
        connection handed to the feed hub is only let go: the hub's descriptor carries it on."""
        if conn.sock in self.detached:
            self.detached.discard(conn.sock)
            graceful = False
        if not graceful:
            gthread.TConn.close(conn)
            return
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._on_linger_readable)
        except (OSError, ValueError, KeyError):
            gthread.TConn.close(conn)
            return
        self.lingering[sock] = time.monotonic() + LINGER_SECONDS

    def _on_linger_readable(self, sock: socket.socket) -> None:
        try:
            if sock.recv(READ_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        del self.lingering[sock]
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(sock)
        sock.close()
