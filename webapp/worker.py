"""gunicorn's threaded worker, with each request received by its event loop before a thread takes it.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its
first byte arrives; the thread then blocks on the socket, without a timeout,
until the client has sent its headers and the application has read its body.
Six clients that stop half-way through their headers took every thread of
the worker, and ``/healthz`` with them. Here the worker's event loop (one
thread, non-blocking sockets, the loop gthread already runs for kept-alive
connections) receives each request first: its head, and the first
``PREFETCH_BYTES`` of its body, or all of it if it is smaller. Only then does a
thread take it. A slow or stalled client therefore costs a socket and at most
about 128 KiB of buffer, never a thread, a pool connection or a transaction,
until it has sent that much.

From then on the thread reads the rest of the body through :class:`ClientSocket`,
which enforces the same two limits (:class:`ClientLimits`): no wait for the
client's next byte lasts more than ``CLIENT_TIMEOUT`` seconds, and after the
first ``CLIENT_TIMEOUT`` seconds the bytes received must average at least
``MIN_UPLOAD_RATE`` per second of the time spent waiting for them (time the
server spends parsing and writing does not count against the client). A
client past either limit gets a 408 problem+json: from the loop, or from the
application, which sees a :class:`ClientTimeout` when it reads (the upload then
rolls back). Writes to a client are bounded too: each must complete within
``CLIENT_TIMEOUT`` seconds, or the connection is dropped.

Connections closed after an answer linger in the loop (half-closed, unread
bytes drained) instead of in gunicorn's blocking two-second close. Plain
HTTP/1.1 only: TLS and HTTP/2 are for the proxy in front, if there is one.
This relies on the internals of gunicorn 27's ``gthread`` worker; it refuses
to load on one without them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers import gthread

from core.settings import Settings
from webapp.reception import PREFETCH_BYTES, Reception

log = logging.getLogger(__name__)

if not all(
    hasattr(gthread.ThreadWorker, name)
    for name in ("enqueue_req", "handle", "handle_request", "finish_request", "murder_pending")
) or not hasattr(gthread, "_DEFER"):
    raise ImportError("webapp.worker needs gunicorn 27's gthread worker (enqueue_req, murder_pending, ...)")

#: How long a closed connection lingers to drain what the client still sends.
LINGER_SECONDS = 2.0
#: One non-blocking read in the loop.
READ_BYTES = 64 * 1024

__all__ = ["PREFETCH_BYTES", "ClientLimits", "ClientSocket", "ClientTimeout", "ReceivingThreadWorker"]


class ClientTimeout(TimeoutError):
    """The client was silent too long, or too slow on average; the message says which."""


@dataclass(frozen=True)
class ClientLimits:
    timeout: float  # CLIENT_TIMEOUT: longest wait for a client's next byte
    min_rate: float  # MIN_UPLOAD_RATE: bytes per second of waiting, after the first `timeout` seconds

    def allowed_wait(self, waited: float, received: int) -> float:
        """How much longer the server may wait for a request that has made it wait ``waited``
        seconds so far for ``received`` bytes."""
        return min(self.timeout, self.timeout + received / self.min_rate - waited)

    def why(self, waited: float, received: int, silent: bool) -> str:
        """Why a client is cut off: ``silent`` for the whole CLIENT_TIMEOUT, or too slow on average."""
        if not silent:
            rate = received / waited if waited else 0.0
            return (
                f"The request arrived at {rate:,.0f} bytes/s, below the minimum of {self.min_rate:,.0f} "
                "bytes/s (MIN_UPLOAD_RATE); it was cut off and nothing was stored."
            )
        return (
            f"Nothing arrived for {self.timeout:g} s (CLIENT_TIMEOUT); the request was cut off and "
            "nothing was stored."
        )


class ClientSocket:
    """What gunicorn's parser reads a request from: the client's socket, within :class:`ClientLimits`.

    Data already waiting is always read, however late: only a wait for the client is bounded.
    """

    def __init__(self, sock: socket.socket, limits: ClientLimits) -> None:
        self.sock = sock
        self.limits = limits
        self.timeout: float | None = None  # set by gunicorn while it drains a body
        self.waited = 0.0
        self.received = 0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def begin(self, waited: float, received: int) -> None:
        """A new request, which has already made the server wait ``waited`` s for ``received`` bytes."""
        self.waited, self.received = waited, received

    def recv(self, size: int) -> bytes:
        allowed = self.limits.allowed_wait(self.waited, self.received)
        wait = allowed if self.timeout is None else min(allowed, self.timeout)
        started = time.monotonic()
        ready = self._poll.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0)
        self.waited += time.monotonic() - started
        if not ready:
            if self.timeout is not None and self.timeout < allowed:
                raise TimeoutError("timed out")  # gunicorn's own bound on a drain
            raise ClientTimeout(self.limits.why(self.waited, self.received, allowed >= self.limits.timeout))
        data = self.sock.recv(size)
        self.received += len(data)
        return data

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def fileno(self) -> int:
        return self.sock.fileno()


def _problem_bytes(status: int, reason: str, slug: str, detail: str, extra: str = "") -> bytes:
    body = json.dumps(
        {"type": f"/problems/{slug}", "title": reason, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class ReceivingThreadWorker(gthread.ThreadWorker):
    """gthread, with requests received in the event loop (see the module's docstring)."""

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("webapp.worker serves plain HTTP: terminate TLS in front of it")
        settings = Settings.from_env()
        self.limits = ClientLimits(settings.client_timeout, settings.min_upload_rate)
        self.receptions: dict[Any, Reception] = {}
        self.lingering: dict[socket.socket, float] = {}
        super().init_process()

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
            answer = _problem_bytes(431, "Request Header Fields Too Large", "head-too-large", detail)
            self._refuse(conn, answer)
        elif reception.wants_continue():
            self._send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, conn: Any) -> None:
        reception = self._forget(conn)
        conn._reception = reception
        conn.data_ready = True
        super().enqueue_req(conn)

    def _forget(self, conn: Any) -> Reception:
        self.poller.unregister(conn.sock)
        return self.receptions.pop(conn)

    def _refuse(self, conn: Any, answer: bytes) -> None:
        reception = self._forget(conn)
        log.info(
            "client %s cut off after %d bytes in %.1f s: %s",
            conn.client,
            reception.received,
            time.monotonic() - reception.started,
            answer.split(b"\r\n", 1)[0].decode(),
        )
        self._send_quietly(conn.sock, answer)
        self.nr_conns -= 1
        conn.close(graceful=True)

    @staticmethod
    def _send_quietly(sock: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.send(data)

    def murder_pending(self) -> None:
        """Every turn of the loop: cut off late clients, end lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        for conn, reception in list(self.receptions.items()):
            if not self.alive:
                detail = "The server is restarting; send the request again."
                answer = _problem_bytes(503, "Service Unavailable", "stopping", detail, "Retry-After: 1\r\n")
                self._refuse(conn, answer)
            elif now >= reception.deadline(self.limits.timeout, self.limits.min_rate):
                silent = now - reception.last >= self.limits.timeout
                detail = self.limits.why(now - reception.started, reception.received, silent)
                self._refuse(conn, _problem_bytes(408, "Request Timeout", "client-timeout", detail))
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
        """Close a connection; gracefully means half-close and drain in the loop, never waiting."""
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
