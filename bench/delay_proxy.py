"""A small user-space TCP proxy that delays every byte by a fixed time, each way.

netem is not available on our machines, so the benchmark (and the runner
overlap tests) put this between a runner and PostgreSQL to play a runner on
another host: with ``delay`` seconds each way, every round trip takes
``2 * delay`` longer. Bytes are delayed, never throttled: each read is written
out ``delay`` after it arrived, in order, however many reads are in flight, so
a stream's bandwidth is unchanged and only its latency grows.

``python -m bench.delay_proxy --listen 127.0.0.1:15432 --to /path/socket/.s.PGSQL.5432 --delay-ms 1``
(``--to`` is a Unix socket path or ``host:port``). :func:`delaying_proxy` runs
one in a subprocess (its own CPU, not the caller's GIL) for the length of a block.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each piece written ``delay`` seconds after it was read, in order."""
    loop = asyncio.get_running_loop()
    pending: collections.deque[tuple[float, bytes]] = collections.deque()
    arrived = asyncio.Event()
    finished = False

    async def send() -> None:
        while True:
            while not pending:
                if finished:
                    return
                arrived.clear()
                await arrived.wait()
            due, data = pending.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(256 * 1024):
            pending.append((loop.time() + delay, data))
            arrived.set()
    except (ConnectionError, OSError):
        pass
    finished = True
    arrived.set()
    with contextlib.suppress(ConnectionError, OSError):
        await sender
        writer.write_eof()


async def _connect(target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if target.startswith("/"):
        return await asyncio.open_unix_connection(target)
    host, _, port = target.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _serve(listen: str, target: str, delay: float, ready: Path | None) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up_reader, up_writer = await _connect(target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))
        for w in (writer, up_writer):
            w.close()

    host, _, port = listen.rpartition(":")
    server = await asyncio.start_server(client, host, int(port))
    if ready is not None:
        ready.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def delaying_proxy(target: str, delay_seconds: float) -> Iterator[int]:
    """A proxy subprocess from a free 127.0.0.1 port to ``target``; yields the port."""
    port = free_port()
    ready = Path(f"/tmp/delay-proxy-{os.getpid()}-{port}.port")
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.delay_proxy", "--listen", f"127.0.0.1:{port}", "--to", target]
    command += ["--delay-ms", str(delay_seconds * 1e3), "--ready-file", str(ready)]
    proc = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the delaying proxy did not start")
            time.sleep(0.02)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        ready.unlink(missing_ok=True)


def unix_socket_target(url: str) -> str:
    """The socket path of a ``postgresql://…?host=/dir&port=N`` URL (as the embedded server gives)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(url)
    return f"{parts['host']}/.s.PGSQL.{parts.get('port', 5432)}"


def via_proxy(url: str, port: int) -> str:
    """The same database, reached at 127.0.0.1:``port``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(url)
    parts.update(host="127.0.0.1", port=str(port))
    return make_conninfo(**parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy")
    parser.add_argument("--listen", required=True, help="host:port to listen on")
    parser.add_argument("--to", required=True, help="a Unix socket path or host:port")
    parser.add_argument("--delay-ms", type=float, required=True, help="added latency each way")
    parser.add_argument("--ready-file", type=Path, help="written with the port once listening")
    args = parser.parse_args(argv)
    # Nothing to flush or close gracefully: connections in flight just end with the process.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(_serve(args.listen, args.to, args.delay_ms / 1e3, args.ready_file))


if __name__ == "__main__":
    main()
