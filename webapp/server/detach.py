"""Handing a request's connection to the feed hub: a stream then holds a socket, not a thread.

The worker wraps the app in :class:`Detaching`, which offers every request a way to detach
(``environ[OFFER]``). A view that takes it (webapp.feed.views) answers with the stream's head and
no body, and names in ``environ[TAKEN]`` what should serve the connection from then on. The
wrapper has gunicorn send that head as it is (no Content-Length; chunked over HTTP/1.1, else the
body runs until the connection closes) and gives a duplicate of the socket to the taker; gunicorn then closes
its own descriptor without shutting the connection down (the worker's ``_close`` skips a
detached socket), and the request's thread is free.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Present while a request may detach (under this worker only).
OFFER = "sentiment.detach"
#: Set by a view that detaches: a callable given the connection's socket (a duplicate of it) and
#: whether the body is chunked (HTTP/1.1) or ends with the connection (HTTP/1.0).
TAKEN = "sentiment.detached_by"

_NOT_SENT = ("content-length", "connection")


class Detaching:
    """WSGI middleware: serves requests as usual, and hands over a connection a view detaches."""

    def __init__(self, app: Callable[..., Iterable[bytes]], detached: set[socket.socket]) -> None:
        self.app = app
        self.detached = detached  # the sockets whose connections left gunicorn: close, never shut down

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[OFFER] = True
        sent: list[Any] = []

        def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(TAKEN) is not None and exc_info is None:
                headers = [(name, value) for name, value in headers if name.lower() not in _NOT_SENT]
            sent.append(status)
            return start_response(status, headers, exc_info)

        body = self.app(environ, starting)
        take = environ.get(TAKEN)
        if take is None or not sent or not sent[-1].startswith("200"):
            return body
        if hasattr(body, "close"):
            body.close()
        response = start_response.__self__  # gunicorn's Response: the head goes out now, as is
        response.force_close()
        response.send_headers()
        # The taker frames the body (chunked over HTTP/1.1, as gunicorn announced); gunicorn must
        # not end it.
        chunked, response.chunked = response.chunked, False
        sock = environ["gunicorn.socket"]
        self.detached.add(sock)
        take(sock.dup(), chunked)
        return []
