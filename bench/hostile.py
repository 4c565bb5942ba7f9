"""Hostile uploads: seconds per MB of bodies whose record never ends, and status latency while
50 slow clients hold connections.

``python -m bench.hostile [--quick]`` starts its own PostgreSQL and a one-worker gunicorn (the
Procfile's web process) and prints the rows ``make bench`` puts in its table:

* ``linear``: bodies of 8, 16, 32 and 64 MB with no newline after the header, and with one
  quoted field that never closes (a newline every 100 bytes inside it). Over HTTP they are
  refused once a line or field passes 10 M characters; through the parser alone, with the
  limits lifted, they are read to the end, which shows the parsing itself is linear.
* ``slow_clients``: ``GET /batch/<id>`` from 10 pollers, and a 10,000-row upload, without and
  then with 50 clients stalled or dribbling a byte a second.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import socket
import statistics
import threading
import time
from collections.abc import Callable

import requests

from bench import Row
from bench.data import texts as make_texts
from bench.e2e import _csv
from bench.reads import pollers
from bench.service import cluster, gunicorn
from webapp.problems import Problem
from webapp.upload.csv_reader import MAX_FIELD_CHARS, UploadOptions, csv_rows

MB = 1_000_000
PIECE = 64 * 1024
SHAPES: dict[str, Callable[[int], bytes]] = {
    "no newline": lambda n: b"id,text\n1," + b"a" * n,
    "quoted field": lambda n: b'id,text\n1,"' + (b"a" * 99 + b"\n") * (n // 100),
}


def _answer_seconds(port: int, body: bytes) -> float:
    """Seconds from the first byte sent to the answer's status line; the answer must be a 400."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        head = (
            "POST /batch/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        started = time.perf_counter()
        sock.sendall(head.encode())
        view = memoryview(body)
        sender = threading.Thread(target=_send, args=(sock, view), daemon=True)
        sender.start()
        status = sock.recv(64)
        elapsed = time.perf_counter() - started
    assert status.startswith(b"HTTP/1.1 400"), status
    sender.join()
    return elapsed


def _send(sock: socket.socket, view: memoryview) -> None:
    try:
        for start in range(0, len(view), MB):
            sock.sendall(view[start : start + MB])
    except OSError:
        pass  # refused: the server stopped reading


def _parser_seconds(body: bytes) -> float:
    """Seconds for csv_rows over the whole body in 64 KiB pieces, with the line and field limits lifted."""
    pieces = [body[i : i + PIECE] for i in range(0, len(body), PIECE)]
    options = UploadOptions(max_line_chars=2**62, max_text_chars=2**62)
    csv.field_size_limit(2**31 - 1)
    try:
        started = time.perf_counter()
        try:
            for _ in csv_rows(pieces, options):
                pass
        except Problem:
            pass  # an unclosed quote, at the very end
        return time.perf_counter() - started
    finally:
        csv.field_size_limit(MAX_FIELD_CHARS)


def linear(sizes: tuple[int, ...] = (8, 16, 32, 64), repeat: int = 3) -> dict:
    """Median seconds per size and shape, over HTTP and through the parser alone."""
    result: dict = {"sizes": sizes}
    with cluster() as url, gunicorn(url) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        for shape, make in SHAPES.items():
            http, parser = [], []
            for size in sizes:
                body = make(size * MB)
                http.append(statistics.median(_answer_seconds(port, body) for _ in range(repeat)))
                parser.append(statistics.median(_parser_seconds(body) for _ in range(repeat)))
            result[shape] = {"http": http, "parser": parser}
    return result


def _slow_clients(port: int, count: int) -> tuple[list[socket.socket], threading.Event]:
    """``count`` connections: silent, stalled in their head, and dribbling head or body a byte a second."""
    head = (
        b"POST /batch/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000000\r\n\r\n"
    )
    socks, dribbling = [], []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if index % 4 == 1:
            sock.sendall(head[:40])
        elif index % 4 == 2:
            dribbling.append((sock, head))
        elif index % 4 == 3:
            sock.sendall(head)
            dribbling.append((sock, b"id,text\n" + b"x" * 10_000))
        socks.append(sock)
    stop = threading.Event()

    def dribble() -> None:
        position = 0
        while not stop.wait(1.0):
            for sock, data in dribbling:
                with contextlib.suppress(OSError):
                    sock.send(data[position : position + 1])
            position += 1

    threading.Thread(target=dribble, daemon=True).start()
    return socks, stop


def slow_clients(count: int = 50, clients: int = 10, seconds: float = 10.0) -> dict:
    """Status latency and a 10,000-row upload's time, without and with ``count`` slow clients."""
    upload = _csv(make_texts("review", 10_000, seed=11))
    with cluster() as url, gunicorn(url) as (base, _), requests.Session() as http:
        port = int(base.rsplit(":", 1)[1])
        public_id = http.post(
            f"{base}/batch/upload", data=upload, headers={"Content-Type": "text/csv"}
        ).json()["batch_id"]

        def timed_upload() -> float:
            started = time.perf_counter()
            answer = http.post(f"{base}/batch/upload", data=upload, headers={"Content-Type": "text/csv"})
            assert answer.status_code == 202, answer.text
            return time.perf_counter() - started

        quiet = pollers(url, base, public_id, clients, seconds)
        quiet_upload = statistics.median(timed_upload() for _ in range(3))
        socks, stop = _slow_clients(port, count)
        try:
            loud = pollers(url, base, public_id, clients, seconds)
            loud_upload = statistics.median(timed_upload() for _ in range(3))
        finally:
            stop.set()
            for sock in socks:
                sock.close()
    return {
        "count": count,
        "clients": clients,
        "quiet": quiet,
        "loud": loud,
        "quiet_upload_s": quiet_upload,
        "loud_upload_s": loud_upload,
    }


def rows(linear: dict, slow: dict) -> list[Row]:
    """``make bench``'s rows: linear time on bodies whose record never ends; service under slow clients."""
    table: list[Row] = []
    sizes = linear["sizes"]
    labels = " / ".join(f"{size}" for size in sizes)
    for shape, what in (
        ("no newline", "no newline after the header"),
        ("quoted field", "one quoted field that never closes (a newline every 100 bytes)"),
    ):
        for way, how, note in (
            ("http", "over HTTP", "refused once a line or field passes 10 M characters; 8 MB is under it"),
            ("parser", "through the parser alone", "limits lifted, read to the end"),
        ):
            seconds = linear[shape][way]
            per_mb = " / ".join(f"{s / size * 1e3:.1f}" for s, size in zip(seconds, sizes, strict=True))
            table.append(
                (
                    f"upload with {what}, {labels} MB, {how} ({note})",
                    f"{sizes[0]} MB: {seconds[0]:.2f} s",
                    f"ms per MB: {per_mb}; {sizes[-1]} MB takes **{seconds[-1] / seconds[0]:.1f}×** "
                    f"the time of {sizes[0]} MB",
                    "≤ 10×",
                )
            )
    quiet, loud = slow["quiet"], slow["loud"]
    table.append(
        (
            f"`GET /batch/<id>` from {slow['clients']} pollers while {slow['count']} clients stall or "
            "dribble a byte a second (1 worker)",
            f"the same without them: p50 {quiet['p50']:.1f} ms, p99 {quiet['p99']:.1f} ms "
            f"({quiet['requests']:,} requests, {quiet['errors']} errors)",
            f"p50 **{loud['p50']:.1f} ms**, p99 **{loud['p99']:.1f} ms** ({loud['requests']:,} requests, "
            f"**{loud['errors']} errors**)",
            "p99 < 1 s; 0 errors",
        )
    )
    table.append(
        (
            f"a 10,000-row upload while those {slow['count']} hold their connections",
            f"the same upload without them: {slow['quiet_upload_s']:.2f} s",
            f"**{slow['loud_upload_s']:.2f} s** (202)",
            "accepted, in seconds",
        )
    )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 and 16 MB only, 5 s of polling")
    args = parser.parse_args(argv)
    sizes = (8, 16) if args.quick else (8, 16, 32, 64)
    for row in rows(linear(sizes), slow_clients(seconds=5 if args.quick else 10)):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
