"""The limits on a client's sending (CLIENT_TIMEOUT, MIN_UPLOAD_RATE) and the socket a thread
reads the rest of a request through within them (see :mod:`webapp.server.worker`).

:class:`ClientTimeout` is what a view sees when a client is cut off; it lives
here, apart from the worker and gunicorn, so that the app can tell it apart.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass


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
