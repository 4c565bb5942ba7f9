"""Followers: how soon the first row of a big upload reaches one, and what 50 cost the runners.

First row: with 2 runners waiting, a 1,000,000-row file is uploaded to gunicorn; a follower
connects to ``/batch/<id>/events`` as soon as the upload answers, and the figure is the time
from that answer to its first ``rows`` event (target: under 1 s). Its baseline, from the same
run, is the upload itself.

Throughput: the same batch of review texts scored by 2 runners with no follower, with 50
followers that accept deflate (as browsers and the CLI do), and with 50 that take the stream
uncompressed, interleaved three times; rows per second from the upload's answer to completion.
Each follower reads every event to the end, on raw sockets, all on one thread; the kernel drops
the bytes before each stream's last 16 KB unread, so the bench's own reading costs little, and
a stream's tail shows whether it ended whole. One deflated follower of the 50 reads through
http.client instead and inflates everything, counting the rows. The followers share the
machine's two cores with gunicorn, PostgreSQL and the runners: this is the whole cost of serving
them, not the database's share alone. The row also gives the CPU they added per batch, against
the batch with none: the web worker's (and per row it delivers to one follower), PostgreSQL's
(the rows' JSON, written once per web worker and row shape however many follow) and the bench's
own reading.
Meanwhile ``/healthz`` and ``GET /batch/<id>`` are timed every 0.2 s: their 95th percentile
with the 50 streams open (target: under 100 ms; the worse of the two kinds) against none.

``python -m bench.follow [--rows N] [--first-rows N]`` runs it alone.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import http.client
import selectors
import socket
import statistics
import termios
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

from bench import Row
from bench.ceiling import process_cpu, server_cpu
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


def _open(base: str, batch_id: str, deflate: bool = False) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=300)
    encoding = "deflate" if deflate else "identity"
    request = (
        f"GET /batch/{batch_id}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
        f"Accept-Encoding: {encoding}\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def _whole(tail: bytes, deflate: bool) -> bool:
    """Whether a stream's last bytes are those of a whole one: its last chunk after ``end`` or,
    deflated, after the zlib stream's end (its last block and checksum, a chunk of 6 bytes)."""
    if deflate:
        return tail[-16:-11] == b"6\r\n\x03\x00" and tail.endswith(b"\r\n0\r\n\r\n")
    return b"event: end\n" in tail and tail.endswith(b"\r\n0\r\n\r\n")


def _inflated_rows(base: str, batch_id: str, counted: list[int]) -> None:
    """One deflated follower read as a client would, inflated: its rows counted, or -1 unless the
    stream ended whole (``end``, then the zlib stream's end with its checksum right)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    conn.request("GET", f"/batch/{batch_id}/events", headers={"Accept-Encoding": "deflate"})
    answer, inflater = conn.getresponse(), zlib.decompressobj()
    assert answer.headers["Content-Encoding"] == "deflate"
    rows, tail, last = 0, b"", b""
    while data := answer.read1(262144):
        inflated = inflater.decompress(data)
        text = tail + inflated
        rows += text.count(b'{"row":')
        tail = text[-6:]  # shorter than what is counted, so nothing is counted twice
        last = (last + inflated)[-TAIL:]  # ``end``, the last event, whole however it was split
    conn.close()
    counted.append(rows if b"event: end\n" in last and inflater.eof else -1)


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
#: Bytes waiting on a follower's socket before the reader wakes for it: fewer wakeups, less of
#: the bench's own CPU charged to the runners.
LOW_WATER = 256 * 1024


def _read_all_to_end(socks: list[socket.socket], deflate: bool, ends: list[bool], cpu: list[float]) -> None:
    """Read every stream to its end on one thread (a selector), so that the bench's own reading
    takes as little of the two cores as it can: the kernel drops all but the last TAIL bytes
    waiting on a socket unread (``MSG_TRUNC``, no copy into this process, as a follower on another
    machine costs this one nothing), and only those are read; a socket wakes the reader only once
    LOW_WATER bytes wait on it (or it closed); ``ends``: whether each ended whole; ``cpu``: this
    thread's CPU seconds, appended at the end."""
    started = time.thread_time()
    tails = {sock: b"" for sock in socks}
    waiting = array.array("i", [0])
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * LOW_WATER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, LOW_WATER)
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
                ends.append(_whole(tails.pop(sock), deflate))  # type: ignore[arg-type]
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


#: The runs of each repeat: no follower, followers taking the stream deflated, and uncompressed.
MODES = ("alone", "deflate", "identity")


def throughput(rows: int, followers: int = 50, repeat: int = 3) -> dict:
    body = _csv(make_texts("review", rows, seed=22))
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    # CPU seconds per batch: the web worker's, PostgreSQL's, the bench's own reading.
    web: dict[str, list[float]] = {mode: [] for mode in MODES}
    server: dict[str, list[float]] = {mode: [] for mode in MODES}
    reader: dict[str, list[float]] = {mode: [] for mode in MODES}
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}  # ms of /healthz and /batch/<id>
    complete = True
    with cluster() as url, gunicorn(url) as (base, master), runners(url, 2, POLL_SECONDS="0.2"):
        worker = int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])
        for _ in range(repeat):
            for mode in MODES:
                web_before, server_before = process_cpu(worker, reaped=False), server_cpu(url)
                batch_id, _, answered = _upload(base, body)
                deflate, count = mode == "deflate", 0 if mode == "alone" else followers
                raw = count - 1 if deflate else count  # one deflated follower inflates (_inflated_rows)
                ends: list[bool] = []
                reading: list[float] = []
                counted: list[int] = []
                threads = [
                    threading.Thread(
                        target=_read_all_to_end,
                        args=([_open(base, batch_id, deflate) for _ in range(raw)], deflate, ends, reading),
                    )
                ]
                if deflate:
                    threads.append(threading.Thread(target=_inflated_rows, args=(base, batch_id, counted)))
                for thread in threads:
                    thread.start()
                _wait_done(url, base, batch_id, latencies[mode])
                rates[mode].append(rows / (time.perf_counter() - answered))
                for thread in threads:
                    thread.join()
                complete &= len(ends) == raw and all(ends) and counted == ([rows] if deflate else [])
                web[mode].append(process_cpu(worker, reaped=False) - web_before)
                server[mode].append(server_cpu(url) - server_before)
                reader[mode].append(reading[0])
    median = {
        name: {mode: statistics.median(found) for mode, found in seconds.items()}
        for name, seconds in (("web", web), ("server", server), ("reader", reader))
    }
    return {
        "rates": {mode: statistics.median(found) for mode, found in rates.items()},
        "followers": followers,
        "rows": rows,
        "complete": complete,
        # What the followers added, per batch, against the same batch with none.
        "web_s": {mode: median["web"][mode] - median["web"]["alone"] for mode in MODES[1:]},
        "server_s": {mode: median["server"][mode] - median["server"]["alone"] for mode in MODES[1:]},
        "reader_s": {mode: median["reader"][mode] for mode in MODES[1:]},
        "ms": {mode: _p95(found) for mode, found in latencies.items()},
    }


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def rows(first: dict[str, float], load: dict) -> list[Row]:
    rates, web, server, reader = load["rates"], load["web_s"], load["server_s"], load["reader_s"]

    def per_row(mode: str) -> float:
        return web[mode] / (load["rows"] * load["followers"]) * 1e6

    deflated, plain = rates["deflate"] / rates["alone"], rates["identity"] / rates["alone"]
    ms = max(load["ms"]["deflate"], load["ms"]["identity"])
    return [
        (
            "follow: upload answered → first row at a follower (1,000,000 rows)",
            f"the upload itself: {first['upload']:.1f} s",
            f"{first['first_row']:.2f} s {'✓' if first['first_row'] < 1 else '✗'}",
            "< 1 s",
        ),
        (
            f"follow: runner throughput with {load['followers']} followers"
            + ("" if load["complete"] else " (a follower missed its end or a row)"),
            f"no follower: {rates['alone']:,.0f} rows/s",
            f"{deflated:.2f}× deflated ({rates['deflate']:,.0f} rows/s) {'✓' if deflated >= 0.9 else '✗'}, "
            f"{plain:.2f}× uncompressed; CPU they added per batch, deflated / uncompressed: web worker "
            f"{web['deflate']:.2f} / {web['identity']:.2f} s ({per_row('deflate'):.2f} / "
            f"{per_row('identity'):.2f} µs per row per follower), PostgreSQL {server['deflate']:.2f} / "
            f"{server['identity']:.2f} s, the bench's reading {reader['deflate']:.2f} / "
            f"{reader['identity']:.2f} s",
            "≥ 0.9×",
        ),
        (
            f"follow: /healthz and GET /batch/<id> while {load['followers']} streams are served, p95",
            f"no stream open: {load['ms']['alone']:.1f} ms",
            f"{ms:.1f} ms {'✓' if ms < 100 else '✗'}",
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
