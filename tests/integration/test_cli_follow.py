"""``sentiment upload --follow`` and ``sentiment follow``, as installed, against the real service
(gunicorn, runner processes, an API key): every row printed exactly once with the labels of the
``results.csv`` download, across streams ended by STREAM_MAX_SECONDS, cut mid-event by a proxy,
refused with 503 past MAX_STREAMS, and a follow interrupted and resumed with ``--after``.
The event-stream parser and the reconnections in detail: tests/unit/test_cli_feed.py."""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import re
import signal
import socket
import subprocess
import threading

import pytest
import requests

from core.clients import create_key
from tests.helpers import make_csv, sample_texts
from tests.integration.test_cli import TIMEOUT, Cli, results_of, write
from tests.scorers import POISON

HEADER = "id,text,sentiment,score,compound,error"
RESUME = re.compile(r"resume with: sentiment follow (\S+) --after (\S+)")


@pytest.fixture
def service(serve, db, tmp_path):  # type: ignore[no-untyped-def]
    """Start gunicorn (with the given settings) and make an API key: (web, key, Cli)."""

    def start(**env: str):  # type: ignore[no-untyped-def]
        web = serve(**env)
        key = create_key(db, "cli-follow-test")
        return web, key, Cli(web.base, key, tmp_path)

    return start


def rows_of(csv_text: str, header: bool = True) -> list[tuple[str, ...]]:
    """The rows of the command's CSV (after its header when ``header``), numbers as floats."""
    records = list(csv.reader(io.StringIO(csv_text)))
    if header:
        assert records and ",".join(records[0]) == HEADER, csv_text[:200]
        records = records[1:]
    return [_comparable(record) for record in records]


def _comparable(record: list[str]) -> tuple[str, ...]:
    identifier, text, sentiment, score, compound, error = record
    numbers = tuple(repr(float(value)) if value else "" for value in (score, compound))
    return (identifier, text, sentiment, *numbers, error)


def download(web, key: str, batch_id: str) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """The batch's results.csv, in the command's columns."""
    reader = csv.DictReader(io.StringIO(results_of(web, key, batch_id).decode()))
    return [_comparable([row[column] for column in HEADER.split(",")]) for row in reader]


def assert_each_once(printed: list[tuple[str, ...]], expected: list[tuple[str, ...]]) -> None:
    """Every row of ``expected`` printed once, none other (in any order: commit order)."""
    repeated = [row[0] for row, count in collections.Counter(printed).items() if count > 1]
    assert not repeated, f"printed twice or more: {repeated[:10]}"
    assert sorted(printed) == sorted(expected)


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of a started command's stdout and stderr once it exits. Read through the pipes'
    own readers: ``communicate`` would skip what an earlier ``readline`` left in their buffers."""
    out, err = process.stdout.read(), process.stderr.read()  # stderr holds a few lines at most
    process.wait(timeout=TIMEOUT)
    return out, err


def events_requests(web) -> int:  # type: ignore[no-untyped-def]
    """How many GET /batch/<id>/events the service has logged."""
    return len(re.findall(r"GET /batch/\S+/events", web.logfile.read_text(errors="replace")))


def test_upload_follow_prints_every_row_once_across_streams_the_server_ends(service, runners, tmp_path):
    web, key, cli = service(STREAM_MAX_SECONDS="1")
    for _ in range(2):
        runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.3")
    reviews = write(tmp_path / "reviews.csv", make_csv(sample_texts(3_000, seed=41)))
    done = cli.run("upload", str(reviews), "--follow")
    assert done.returncode == 0, done.stderr
    batch_id = done.stderr.splitlines()[0]
    assert batch_id.startswith("batch-")
    assert f"{batch_id} completed: 3,000 rows" in done.stderr
    printed = rows_of(done.stdout)
    assert_each_once(printed, download(web, key, batch_id))
    assert {row[2] for row in printed} == {"positive", "negative", "neutral"}
    assert events_requests(web) >= 2  # 30 chunks at 0.3 s by 2 runners outlast a 1 s stream

    again = cli.run("follow", batch_id)  # a finished batch: every row, then its end
    assert again.returncode == 0, again.stderr
    assert sorted(rows_of(again.stdout)) == sorted(printed)


class CuttingProxy:
    """A TCP proxy in front of the service that closes each of its first ``cuts`` connections
    once ``budget(n)`` bytes of the answer have passed (mid-event, at no boundary in particular:
    the CLI asks for the stream deflated, so mid-piece of the zlib stream too); later connections
    pass whole. ``heads``: the first bytes of each answer."""

    def __init__(self, port: int, cuts: int) -> None:
        self.upstream = port
        self.cuts = cuts
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.heads: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def budget(n: int) -> int:
        return 750 + 1_979 * n  # deflated, about a quarter of the rows' bytes

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            n = self.connections
            server = socket.create_connection(("127.0.0.1", self.upstream))
            budget = self.budget(n) if n <= self.cuts else None
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, budget, True), daemon=True).start()

    def _pipe(
        self, source: socket.socket, target: socket.socket, budget: int | None, answer: bool = False
    ) -> None:
        try:
            while data := source.recv(65536):
                if answer:
                    self.heads.append(data[:1024])
                    answer = False
                if budget is not None:
                    data = data[:budget]
                    budget -= len(data)
                target.sendall(data)
                if budget == 0:
                    break
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_follow_through_connections_cut_mid_event_prints_every_row_once(service, runners, tmp_path):
    web, key, cli = service()
    runners.start(SCORER="tests.scorers:poisoned", MAX_ATTEMPTS="2", RETRY_BACKOFF_SECONDS="0.1")
    texts = sample_texts(2_000, seed=42)
    texts[777] = f"this one is {POISON}"
    uploaded = cli.run("upload", str(write(tmp_path / "poisoned.csv", make_csv(texts))))
    assert uploaded.returncode == 0, uploaded.stderr
    batch_id = uploaded.stdout.strip()
    proxy = CuttingProxy(web.port, cuts=6)
    cli.env["SENTIMENT_URL"] = f"http://127.0.0.1:{proxy.port}"
    try:
        done = cli.run("follow", batch_id)
    finally:
        proxy.close()
    assert done.returncode == 2, done.stderr  # completed_with_errors
    assert proxy.connections >= 7 and "reconnecting" in done.stderr
    assert all(b"content-encoding: deflate" in head.lower() for head in proxy.heads), proxy.heads
    printed = rows_of(done.stdout)
    assert_each_once(printed, download(web, key, batch_id))
    (failed,) = [row for row in printed if row[5]]
    assert failed[0] == "r778" and failed[2:5] == ("", "", "")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_follow_stopped_and_resumed_after_the_event_it_names_prints_the_rest_once(
    service, runners, tmp_path, signum, code
):
    web, key, cli = service()
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.5")
    reviews = write(tmp_path / "slow.csv", make_csv(sample_texts(2_000, seed=43)))
    uploaded = cli.run("upload", str(reviews))
    assert uploaded.returncode == 0, uploaded.stderr
    batch_id = uploaded.stdout.strip()
    following = cli.start("follow", batch_id)
    try:
        assert following.stdout.readline() == HEADER + "\n"
        first = following.stdout.readline()  # a row printed: the batch is under way
        following.send_signal(signum)
        rest, err = finish(following)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()
    assert following.returncode == code, err
    ((resumed_id, after),) = RESUME.findall(err)
    assert resumed_id == batch_id
    resumed = cli.run("follow", batch_id, "--after", after)
    assert resumed.returncode == 0, resumed.stderr
    assert not resumed.stdout.startswith(HEADER)
    printed = rows_of(HEADER + "\n" + first + rest) + rows_of(resumed.stdout, header=False)
    assert_each_once(printed, download(web, key, batch_id))


def test_a_503_past_max_streams_is_retried_after_its_retry_after(service, runners, tmp_path):
    web, key, cli = service(MAX_STREAMS="1")
    reviews = write(tmp_path / "reviews.csv", make_csv(sample_texts(500, seed=44)))
    uploaded = cli.run("upload", str(reviews))
    assert uploaded.returncode == 0, uploaded.stderr
    batch_id = uploaded.stdout.strip()
    # No runner yet: this stream stays open, holding the worker's only stream.
    held = requests.get(
        f"{web.base}/batch/{batch_id}/events",
        headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
        stream=True,
        timeout=60,
    )
    assert held.status_code == 200
    following = cli.start("follow", batch_id)
    try:
        told = following.stderr.readline()
        assert "503" in told and "retrying in" in told, told
        runners.start()  # the held stream's next writes find it closed, or it ends with the batch
        held.close()
        out, err = finish(following)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()
    assert following.returncode == 0, err
    assert_each_once(rows_of(out), download(web, key, batch_id))
