"""The receiving worker's edges, against a real gunicorn over real sockets: lengths gunicorn reads
differently from a naive parser, clients that never read their answers, and a graceful reload.

Nothing here measures time: the tests wait for conditions (with generous bounds) and check what
was answered.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.rawhttp import connect, exchange, head, read_answer, still_open


def healthz_answers(port: int, times: int = 3) -> None:
    """/healthz answers, each time within 10 s."""
    for _ in range(times):
        with connect(port, timeout=10) as sock:
            sock.sendall(head("GET", "/healthz", Connection="close"))
            answer = read_answer(sock)
        assert answer is not None and answer.status == 200


def test_long_or_zero_padded_content_lengths_wait_for_their_body_in_the_loop(serve):
    web = serve(CLIENT_TIMEOUT="300", WEB_THREADS="8")
    lengths = ["00000000000000000001000", "1" + "0" * 20, "0" * 30 + "5"]
    clients = []
    for index in range(12):  # more than the threads
        sock = connect(web.port)
        sock.sendall(head("POST", "/login", Content_Type="text/plain", Content_Length=lengths[index % 3]))
        clients.append(sock)
    try:
        healthz_answers(web.port)
        assert all(still_open(sock) for sock in clients)  # still being received, not refused
        # The body, once in, is read with the length gunicorn reads: the five bytes of 000…05. It is
        # answered at once (without keys, sign-in sends the browser home), and the connection's next
        # request starts right after those five bytes.
        clients[2].settimeout(10)
        clients[2].sendall(b"hello")
        answer = read_answer(clients[2])
        assert answer is not None and (answer.status, answer.headers["location"]) == (303, "/")
        clients[2].sendall(head("GET", "/healthz"))
        answer = read_answer(clients[2])
        assert answer is not None and answer.status == 200
    finally:
        for sock in clients:
            sock.close()


@pytest.mark.parametrize("length", ["1_000", "+5", "5 5", "\xb2", "5, 5"])
def test_a_content_length_gunicorn_would_refuse_is_a_400_from_the_loop(serve, length):
    web = serve()
    request = head("POST", "/login", Content_Type="text/plain", Content_Length=length)
    answer = exchange(web.port, request.decode().encode("latin-1"), half_close=False)
    assert answer is not None and answer.status == 400


def test_two_content_lengths_are_a_400(serve):
    web = serve()
    request = head("POST", "/login", Content_Length="5")[:-2] + b"Content-Length: 5\r\n\r\nhello"
    answer = exchange(web.port, request, half_close=False)
    assert answer is not None and answer.status == 400


def _slow_reader(port: int, requests: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(head("GET", "/openapi.json") * requests)
    return sock


def _tcp_table() -> list[list[str]]:
    return [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]


def _address(port: int) -> str:
    return f"0100007F:{port:04X}"  # 127.0.0.1:port as /proc/net/tcp writes it


def unsent_to(port: int, client: socket.socket) -> int:
    """Bytes the server on ``port`` has written to ``client`` that are not acknowledged yet: its end's
    send queue (/proc/net/tcp), which stays full while the client's window is shut."""
    ends = (_address(port), _address(client.getsockname()[1]))
    queues = [fields[4] for fields in _tcp_table() if (fields[1], fields[2]) == ends]
    return int(queues[0].split(":")[0], 16) if queues else 0


def test_clients_that_never_read_their_answers_do_not_hold_the_threads(serve):
    web = serve(CLIENT_TIMEOUT="300", WEB_THREADS="8")
    readers = [_slow_reader(web.port, 1000) for _ in range(9)]  # 15 MB of answers each
    try:
        # More readers than threads, each with answers written that it does not take, and nothing
        # more written to any of them (the same bytes waiting half a second later): their windows
        # are full, and anything still writing to them is blocked.
        waiting: list[int] = []

        def windows_full() -> bool:
            nonlocal waiting
            now = [unsent_to(web.port, sock) for sock in readers]
            full, waiting = all(now) and now == waiting, now
            return full

        wait_for(windows_full, timeout=60, interval=0.5)
        # The worker wrote each of them one answer at most: the next requests wait in its loop, not
        # in threads blocked writing (which would have written up to the socket's send buffer).
        one_answer = len(exchange(web.port, head("GET", "/openapi.json", Connection="close")).body) + 1024
        assert max(waiting) <= one_answer, (waiting, one_answer)
        healthz_answers(web.port, times=5)
        # A slow reader that starts reading gets its answers, in order.
        sock = readers[0]
        for _ in range(3):
            answer = read_answer_exactly(sock)
            assert answer == 200
    finally:
        for sock in readers:
            sock.close()
    healthz_answers(web.port)


def read_answer_exactly(sock: socket.socket) -> int:
    """The status of the next answer, reading exactly its bytes (more are pipelined behind it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(1)
        assert piece, "closed"
        data += piece
    lines = data.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while length:
        piece = sock.recv(min(length, 65536))
        assert piece, "closed"
        length -= len(piece)
    return int(lines[0].split()[1])


def workers(master: int) -> set[int]:
    """The process ids of a gunicorn master's workers (its children)."""
    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def accepting(pid: int, port: int) -> bool:
    """Whether process ``pid`` polls the listening socket on ``port``: a stopping gthread worker
    takes it out of its epoll set first thing (read from /proc/<pid>/fdinfo)."""
    listening = {f[9] for f in _tcp_table() if f[1] == _address(port) and f[3] == "0A"}  # its inode
    try:
        fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except FileNotFoundError:  # the process is gone
        return False
    listener = {fd for fd, target in fds.items() if target in {f"socket:[{inode}]" for inode in listening}}
    polled = {
        line.split()[1]
        for fd, target in fds.items()
        if target == "anon_inode:[eventpoll]"
        for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
        if line.startswith("tfd:")
    }
    return bool(listener & polled)


def test_kept_alive_requests_during_a_reload_are_answered_not_refused(serve):
    web = serve(WEB_THREADS="8")
    old = workers(web.proc.pid)
    assert old and all(accepting(pid, web.port) for pid in old)
    clients = []
    for _ in range(6):
        sock = connect(web.port)
        sock.sendall(head("GET", "/healthz"))
        answer = read_answer_exactly(sock)
        assert answer == 200
        clients.append(sock)
    try:
        request = head("GET", "/healthz")
        for sock in clients[::2]:
            sock.sendall(request[:10])  # still arriving when the worker stops
        web.proc.send_signal(signal.SIGHUP)  # the master replaces its worker, which stops gracefully
        # A new worker is there, and the old one has stopped accepting: it is stopping.
        wait_for(
            lambda: workers(web.proc.pid) - old and not any(accepting(pid, web.port) for pid in old),
            timeout=30,
            interval=0.01,
        )
        for index, sock in enumerate(clients):
            sock.sendall(request[10:] if index % 2 == 0 else request)
        for sock in clients:
            answer = read_answer(sock)
            # Answered by the stopping worker, which closes each connection after its answer.
            assert answer is not None and answer.status == 200, answer
            assert answer.headers["connection"] == "close"
    finally:
        for sock in clients:
            sock.close()
    healthz_answers(web.port)
