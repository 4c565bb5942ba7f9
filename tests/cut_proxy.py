"""A TCP proxy in a thread of the test, which the test can cut: the failover tests put it between a
standby and its primary (``primary_conninfo``), so the standby stops receiving WAL when told.

No netem or firewall is needed. :meth:`CutProxy.cut` closes every connection it carries and
refuses new ones (closed as soon as accepted) until :meth:`CutProxy.mend`; what the primary sent
into a connection before the cut may still reach the standby, nothing after it does.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading

log = logging.getLogger(__name__)


class CutProxy:
    """Forwards 127.0.0.1:``port`` to ``target`` (host, port) until :meth:`close`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="cut-proxy", daemon=True)]
        self._threads[0].start()

    def cut(self) -> None:
        """Close every connection now and refuse new ones."""
        self._cut.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def mend(self) -> None:
        """Accept and carry connections again."""
        self._cut.clear()

    def close(self) -> None:
        """Cut, stop listening and end every thread."""
        self._closed.set()
        self.cut()
        _close(self._listener)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            thread = threading.Thread(target=self._carry, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _carry(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy both ways until either side ends or the proxy cuts them."""
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peer:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._cut.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        data = key.fileobj.recv(256 * 1024)  # type: ignore[union-attr]
                        if not data:
                            return
                        peer[key.fileobj].sendall(data)  # type: ignore[index]
            except (OSError, ValueError):  # cut under us
                return
            finally:
                _close(client)
                _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
