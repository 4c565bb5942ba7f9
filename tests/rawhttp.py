"""HTTP/1.1 over a bare socket, for clients no library would be: stalled, dribbling, cut short."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict:
        assert self.headers.get("content-type") == "application/problem+json", (self.status, self.body[:300])
        body = json.loads(self.body)
        assert body["status"] == self.status and body["title"] and body["detail"]
        return body


def connect(port: int, timeout: float = 60.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> Answer | None:
    """The next final answer on the socket (1xx skipped); None if it closed before one."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                return None
            data += chunk
        raw_head, _, data = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(data) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return Answer(status, headers, data[:length])


def exchange(port: int, request: bytes, *, half_close: bool = True) -> Answer | None:
    """Send ``request`` (perhaps cut short), say no more is coming, and read the answer."""
    with connect(port) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock)


@dataclass
class Sender:
    """Sends ``body`` on ``sock`` from a thread, as fast as the server reads it, counting bytes."""

    sock: socket.socket
    body_pieces: object  # an iterable of bytes
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for piece in self.body_pieces:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError:
            pass
        finally:
            self.done.set()


class Dribbler:
    """Clients that send one byte a second each, from one thread, until stopped."""

    def __init__(self) -> None:
        self.clients: list[tuple[socket.socket, bytes]] = []
        self.positions: list[int] = []
        self.closed: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket, data: bytes) -> None:
        self.clients.append((sock, data))
        self.positions.append(0)

    def start(self) -> Dribbler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for index, (sock, data) in enumerate(self.clients):
                if index in self.closed or self.positions[index] >= len(data):
                    continue
                try:
                    sock.send(data[self.positions[index] : self.positions[index] + 1])
                    self.positions[index] += 1
                except OSError:
                    self.closed.add(index)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed the connection nor answered on it."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # bytes: it answered; b"": it closed
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


def wait_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open for {timeout} s")
