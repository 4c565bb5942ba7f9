"""The benchmark's delaying TCP proxy (bench/delay_proxy.py) passes every byte, in order, both ways,
and passes on the end of a stream; no database, no timing assertions."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from bench.delay_proxy import delaying_proxy


def _echo_server(path: Path) -> socket.socket:
    """A Unix-socket server that echoes each connection's bytes back, then closes at its end."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _read_all(client: socket.socket, into: bytearray) -> None:
    while data := client.recv(65536):
        into.extend(data)


def test_bytes_pass_both_ways_in_order_and_the_end_is_passed_on(tmp_path):
    server = _echo_server(tmp_path / "echo.sock")
    payload = random.Random(5).randbytes(3 * 1024 * 1024)  # past every socket buffer on the way
    try:
        with delaying_proxy(str(tmp_path / "echo.sock"), 0.005) as port:
            for _ in range(2):  # a second connection through the same proxy
                with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                    received = bytearray()
                    reader = threading.Thread(target=_read_all, args=(client, received))
                    reader.start()
                    for start in range(0, len(payload), 10_000):  # many small writes
                        client.sendall(payload[start : start + 10_000])
                    client.shutdown(socket.SHUT_WR)  # the end goes through, the echo ends, ours too
                    reader.join(timeout=60)
                    assert not reader.is_alive()
                    assert bytes(received) == payload
    finally:
        server.close()
