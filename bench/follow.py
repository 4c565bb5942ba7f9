"""Followers: how soon the first row of a big upload reaches one, and what 50 cost the runners.

First row: with 2 runners waiting, a 1,000,000-row file is uploaded to gunicorn; a follower
connects to ``/batch/<id>/events`` as soon as the upload answers, and the figure is the time
from that answer to its first ``rows`` event (target: under 1 s). Its baseline, from the same
run, is the upload itself.

Throughput: the same batch of review texts scored by 2 runners with no follower, then with 50
followers (each reads every event to the end, on raw sockets, all on one thread; the kernel
drops the bytes before each stream's last 16 KB unread, so the bench's own reading costs
little), interleaved three times; rows per second from the upload's answer to
completion. The followers share the machine's two cores with gunicorn, PostgreSQL and the
runners: this is the whole cost of serving them, not the database's share alone; the row also
gives the web worker's CPU per row it delivers to one follower, where most of that cost is
copying bytes through loopback TCP. Meanwhile ``/healthz`` and ``GET /batch/<id>`` are timed
every 0.2 s: their 95th percentile with the 50 streams open (target: under 100 ms) against none.

``python -m bench.follow [--rows N] [--first-rows N]`` runs it alone.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import selectors
import socket
import statistics
import termios
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

from bench import Row
from bench.ceiling import process_cpu
from bench.data import texts as make_texts
from bench.e2e import _csv
from bench.service import cluster, gunicorn, runners


def _upload(base: str, body: bytes) -> tuple[str, float, float]:
    """(batch id, when the upload started, when it answered) by perf_counter."""
    started = time.perf_counter()
    headers = {"Content-Type": "text/csv"}
    answer = requests.post(f"{base}/batch/upload", data=body, headers=headers, timeout=600)
    answered = time.perf_counter()
    answer.raise_for_status()
    return answer.json()["batch_id"], started, answered


def _open(base: str, batch_id: str) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=300)
    request = f"GET /batch/{batch_id}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def _first_rows_after(base: str, batch_id: str) -> float:
    """perf_counter when the first ``rows`` event arrived."""
    sock, seen = _open(base, batch_id), b""
    try:
        while b"event: rows\n" not in seen:
            data = sock.recv(65536)
            assert data, "the stream ended before any row"
            seen = seen[-64:] + data
        return time.perf_counter()
    finally:
        sock.close()


#: Bytes of each stream's end the reader keeps: enough for the ``end`` event and the batch it carries.
TAIL = 16384


def _read_all_to_end(socks: list[socket.socket], ends: list[bool], cpu: list[float]) -> None:
    """Read every stream to its end on one thread (a selector), so that the bench's own reading
    takes as little of the two cores as it can: the kernel drops all but the last TAIL bytes
    waiting on a socket unread (``MSG_TRUNC``, no copy into this process, as a follower on another
    machine costs this one nothing), and only those are read; ``ends``: whether each saw ``end``;
    ``cpu``: this thread's CPU seconds, appended at the end."""
    started = time.thread_time()
    tails = {sock: b"" for sock in socks}
    waiting = array.array("i", [0])
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while tails:
            for key, _ in selector.select():
                sock = key.fileobj
                fcntl.ioctl(sock, termios.FIONREAD, waiting)  # type: ignore[arg-type]
                if waiting[0] > TAIL:
                    sock.recv(waiting[0] - TAIL, socket.MSG_TRUNC)  # type: ignore[union-attr]
                    tails[sock] = b""  # type: ignore[index]
                    continue
                data = sock.recv(TAIL)  # type: ignore[union-attr]
                if data:
                    tails[sock] = (tails[sock] + data)[-TAIL:]  # type: ignore[index]
                    continue
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                ends.append(b"event: end\n" in tails.pop(sock))  # type: ignore[arg-type]
    cpu.append(time.thread_time() - started)


def _wait_done(url: str, base: str, batch_id: str, latencies: list[float]) -> None:
    """Until the batch is final; meanwhile ``/healthz`` and the batch's status, timed, every 0.2 s."""
    with psycopg.connect(url, autocommit=True) as conn, requests.Session() as http:
        status = "SELECT status FROM batches WHERE public_id = %s"
        while conn.execute(status, (batch_id,)).fetchone()[0] == "processing":
            for path in ("/healthz", f"/batch/{batch_id}"):
                latencies.append(http.get(base + path, timeout=30).elapsed.total_seconds() * 1e3)
            time.sleep(0.2)


def first_row(first_rows: int, repeat: int = 3) -> dict[str, float]:
    body = _csv(make_texts("short", first_rows, seed=21))
    uploads, firsts = [], []
    with cluster() as url, gunicorn(url) as (base, _), runners(url, 2, POLL_SECONDS="0.2"):
        for _ in range(repeat):
            batch_id, started, answered = _upload(base, body)
            firsts.append(_first_rows_after(base, batch_id) - answered)
            uploads.append(answered - started)
            requests.post(f"{base}/batch/{batch_id}/cancel", timeout=30)
    return {"upload": statistics.median(uploads), "first_row": statistics.median(firsts)}


def throughput(rows: int, followers: int = 50, repeat: int = 3) -> dict[str, float]:
    body = _csv(make_texts("review", rows, seed=22))
    rates: dict[int, list[float]] = {0: [], followers: []}
    web_cpu: list[float] = []  # the web worker's CPU seconds per row delivered to a follower
    reader_cpu: list[float] = []  # the bench's reading thread's, the same way
    latencies: dict[int, list[float]] = {0: [], followers: []}  # ms of /healthz and /batch/<id>
    complete = True
    with cluster() as url, gunicorn(url) as (base, master), runners(url, 2, POLL_SECONDS="0.2"):
        worker = int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])
        for _ in range(repeat):
            for count in (0, followers):
                cpu_before = process_cpu(worker, reaped=False)
                batch_id, _, answered = _upload(base, body)
                ends: list[bool] = []
                reading: list[float] = []
                reader = threading.Thread(
                    target=_read_all_to_end,
                    args=([_open(base, batch_id) for _ in range(count)], ends, reading),
                )
                reader.start()
                _wait_done(url, base, batch_id, latencies[count])
                rates[count].append(rows / (time.perf_counter() - answered))
                reader.join()
                complete &= len(ends) == count and all(ends)
                if count:
                    web_cpu.append((process_cpu(worker, reaped=False) - cpu_before) / (rows * count))
                    reader_cpu.append(reading[0] / (rows * count))
    return {
        "alone": statistics.median(rates[0]),
        "followed": statistics.median(rates[followers]),
        "followers": followers,
        "complete": complete,
        "web_us_per_row": statistics.median(web_cpu) * 1e6,
        "reader_us_per_row": statistics.median(reader_cpu) * 1e6,
        "ms_alone": _p95(latencies[0]),
        "ms_followed": _p95(latencies[followers]),
    }


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def rows(first: dict[str, float], load: dict) -> list[Row]:
    ratio = load["followed"] / load["alone"]
    return [
        (
            "follow: upload answered → first row at a follower (1,000,000 rows)",
            f"the upload itself: {first['upload']:.1f} s",
            f"{first['first_row']:.2f} s {'✓' if first['first_row'] < 1 else '✗'}",
            "< 1 s",
        ),
        (
            f"follow: runner throughput with {load['followers']} followers"
            + ("" if load["complete"] else " (a follower missed its end)"),
            f"no follower: {load['alone']:,.0f} rows/s",
            f"{ratio:.2f}× ({load['followed']:,.0f} rows/s) {'✓' if ratio >= 0.9 else '✗'}; "
            f"web worker {load['web_us_per_row']:.2f} µs CPU per row per follower "
            f"(the bench's reading {load['reader_us_per_row']:.2f})",
            "≥ 0.9×",
        ),
        (
            f"follow: /healthz and GET /batch/<id> while {load['followers']} streams are served, p95",
            f"no stream open: {load['ms_alone']:.1f} ms",
            f"{load['ms_followed']:.1f} ms {'✓' if load['ms_followed'] < 100 else '✗'}",
            "< 100 ms",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.follow")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--first-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    first = first_row(args.first_rows)
    print(first, flush=True)
    load = throughput(args.rows)
    print(load, flush=True)
    for row in rows(first, load):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
