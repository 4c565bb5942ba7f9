"""The ``sentiment`` command's live feed: the Server-Sent Events parser (cli.feed.EventParser), and
``upload --follow`` / ``follow`` against a small event-stream server of the test's own (real
sockets) that cuts its streams short in every way the service's may end. The same command against
the real service: tests/integration/test_cli_follow.py."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli import main as cli_main
from cli.feed import Event, EventParser
from cli.follow import COLUMNS, _Signals, csv_rows

SENTIMENT = str(Path(sys.executable).parent / "sentiment")


def parsed(*pieces: bytes, last_id: str = "") -> tuple[list[Event], EventParser]:
    parser = EventParser(last_id)
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events, parser


STREAM = (
    b"retry: 1500\n\n"
    b": keep-alive\n\n"
    b'event: progress\ndata: {"a": 1}\n\n'
    b"event: rows\nid: 1.0\ndata: line one\ndata:line two\ndata:  two spaces\ndata\n\n"
    b"data: unnamed, id kept\n\n"
    b"id: 2.1\nevent: rows\nunknown: field\n: a comment inside\ndata: {}\n\n"
)
EXPECTED = [
    Event("progress", '{"a": 1}', ""),
    Event("rows", "line one\nline two\n two spaces\n", "1.0"),
    Event("message", "unnamed, id kept", "1.0"),
    Event("rows", "{}", "2.1"),
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_whatever_the_line_ends_and_however_the_bytes_are_cut(newline):
    stream = STREAM.replace(b"\n", newline)
    events, parser = parsed(stream)
    assert events == EXPECTED
    assert (parser.retry, parser.last_id) == (1500, "2.1")
    one_by_one, _ = parsed(*(stream[i : i + 1] for i in range(len(stream))))
    assert one_by_one == EXPECTED
    for cut in range(len(stream)):  # every split in two, CRLF split between its bytes included
        assert parsed(stream[:cut], stream[cut:])[0] == EXPECTED


def test_an_event_cut_off_by_the_end_of_the_stream_is_never_dispatched():
    events, parser = parsed(b"event: rows\nid: 1.0\ndata: a\n\nevent: rows\nid: 2.0\ndata: b\n")
    assert events == [Event("rows", "a", "1.0")]
    assert parser.last_id == "1.0"  # a reconnection asks for what came after 1.0: b comes again


def test_ids_persist_reset_and_move_without_data():
    events, parser = parsed(b"data: a\n\n", last_id="7.0")
    assert events == [Event("message", "a", "7.0")]  # a resumed stream starts from the given id
    events, parser = parsed(b"id: 3.0\n\ndata: a\n\nid\ndata: b\n\nid: x\x00y\ndata: c\n\n")
    # An id on an event without data moves the last id; an empty id clears it; one with NUL is ignored.
    assert events == [Event("message", "a", "3.0"), Event("message", "b", ""), Event("message", "c", "")]
    assert parser.last_id == ""


def test_retry_takes_digits_only_a_bom_only_first_and_utf8_split_across_reads():
    _, parser = parsed(b"retry: 12x\n\nretry: -5\n\n")
    assert parser.retry is None
    text = "\ufeffdata: caf\u00e9 \u2014 \U0001f600\n\n".encode()
    events, _ = parsed(*(text[i : i + 1] for i in range(len(text))))
    assert events == [Event("message", "caf\u00e9 \u2014 \U0001f600", "")]
    events, _ = parsed(b"data: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert [event.data for event in events] == ["a"]  # a BOM later is part of a field name


def test_rows_as_csv_in_the_download_columns_with_formulas_defused():
    rows = [
        {"row": 1, "line": 2, "id": "=1+1", "text": 'a, "b"\nc', "sentiment": "positive"}
        | {"score": 0.5, "compound": 0.5},
        {"row": 2, "line": 3, "id": "x", "text": "-2", "sentiment": None, "score": None}
        | {"compound": None, "error": "boom"},
    ]
    assert list(csv.reader(io.StringIO(csv_rows(rows).decode()))) == [
        ["'=1+1", 'a, "b"\nc', "positive", "0.5", "0.5", ""],
        ["x", "'-2", "", "", "", "boom"],
    ]


# The command against a feed server of the test's own.

BATCH = {"batch_id": "batch-1", "processed_count": 0, "failed_count": 0, "invalid_count": 0}
ROWS = [
    {
        "row": n,
        "line": n + 1,
        "id": f"r{n}",
        "text": f"text {n}, with a comma" if n % 3 else f'"quoted" {n}\nover two lines',
        "sentiment": ("positive", "negative", "neutral")[n % 3],
        "score": n / 100,
        "compound": (n / 100) * (-1 if n % 3 == 1 else 1),
    }
    for n in range(1, 31)
]


def feed_events(status: str) -> list[tuple[str | None, bytes]]:
    """The feed of a 30-row batch in 10 chunks, as (id, bytes) per event; rows' JSON over many
    data lines, one per row."""

    def progress(kind: str, count: int, **more: object) -> bytes:
        batch = {**BATCH, "status": "processing", "total_count": 30, "processed_count": count, **more}
        return f"event: {kind}\ndata: {json.dumps(batch)}\n\n".encode()

    events: list[tuple[str | None, bytes]] = [(None, progress("progress", 0))]
    for chunk in range(10):
        lines = ",\ndata: ".join(json.dumps(row) for row in ROWS[chunk * 3 : chunk * 3 + 3])
        event_id = f"{chunk + 4}.{chunk % 3}"
        events.append(
            (event_id, f'event: rows\nid: {event_id}\ndata: {{"rows": [\ndata: {lines}]}}\n\n'.encode())
        )
        events.append((None, progress("progress", chunk * 3 + 3)))
    events.append((None, progress("end", 30, status=status)))
    return events


class FeedServer:
    """Serves GET /batch/batch-1/events from Last-Event-ID on, connection ``n`` as ``plans[n]``
    says (the last plan again after that): ``("whole",)``; ``("cut", bytes)`` closes after that
    many bytes of the stream, mid-event; ``("close", events)`` closes cleanly after that many
    events; ``("503",)``; ``("stall", events)`` sends that many and waits for ``release``. With
    ``deflate``, each stream is one zlib stream, and a cut cuts it."""

    def __init__(
        self, plans: list[tuple], status: str = "completed", chunked: bool = False, deflate: bool = False
    ) -> None:
        self.events = feed_events(status)
        self.plans = plans
        self.deflate = deflate
        self.last_ids: list[str | None] = []
        self.release = threading.Event()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                feed.answer(self, chunked)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                body = json.dumps({**BATCH, "status": "processing", "total_count": 30}).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler, chunked: bool) -> None:
        assert handler.path == "/batch/batch-1/events"
        assert handler.headers["Accept"] == "text/event-stream"
        last = handler.headers.get("Last-Event-ID")
        self.last_ids.append(last)
        plan = self.plans[min(len(self.last_ids), len(self.plans)) - 1]
        if plan[0] in ("503", "404"):
            body = json.dumps({"type": "/problems/x", "title": "Refused", "detail": plan[0]}).encode()
            handler.send_response(int(plan[0]))
            handler.send_header("Content-Type", "application/problem+json")
            handler.send_header("Retry-After", "0")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        ids = [event_id for event_id, _ in self.events]
        after = ids.index(last) + 1 if last else 0
        events = [data for _, data in self.events[after:]]
        if plan[0] in ("close", "stall"):
            events = events[: plan[1]]
        stream = b"retry: 0\r\n\r\n: hello\r\n\r\n" + b"".join(events)
        if self.deflate:
            assert handler.headers["Accept-Encoding"] == "deflate"
            stream = zlib.compress(stream)
        if plan[0] == "cut":
            stream = stream[: plan[1]]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        if self.deflate:
            handler.send_header("Content-Encoding", "deflate")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(stream), 50):
            piece = stream[start : start + 50]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            handler.wfile.flush()
        if plan[0] == "stall":
            self.release.wait(60)
        elif chunked and plan[0] != "cut":
            handler.wfile.write(b"0\r\n\r\n")
        handler.close_connection = True

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server(monkeypatch) -> Iterator[Callable[..., FeedServer]]:
    servers: list[FeedServer] = []

    def start(
        plans: list[tuple], status: str = "completed", chunked: bool = False, **more: bool
    ) -> FeedServer:
        servers.append(FeedServer(plans, status, chunked, **more))
        monkeypatch.setenv("SENTIMENT_URL", servers[-1].url)
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def printed_rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out), fieldnames=COLUMNS))


def expected_rows(rows: list[dict]) -> list[dict[str, str]]:
    return printed_rows(csv_rows(rows).decode())


@pytest.mark.parametrize(
    ("chunked", "deflate"),
    [(False, False), (True, False), (True, True)],
    ids=["close-delimited", "chunked", "chunked-deflated"],
)
def test_follow_prints_every_row_once_across_cut_closed_and_refused_streams(
    feed_server, capsys, chunked, deflate
):
    cuts = (400, 150) if deflate else (700, 1500)  # deflated, the same events take fewer bytes
    plans = [("cut", cuts[0]), ("close", 3), ("503",), ("cut", cuts[1]), ("cut", 33), ("whole",)]
    server = feed_server(plans, chunked=chunked, deflate=deflate)
    assert cli_main.main(["follow", "batch-1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("id,text,sentiment,score,compound,error\n")
    assert printed_rows(out)[1:] == expected_rows(ROWS)
    assert server.last_ids[0] is None and len(server.last_ids) == len(plans)
    assert all(server.last_ids[1:]), server.last_ids  # every reconnection resumed from an id
    assert "reconnecting" in err and "batch-1 completed: 30 rows" in err


@pytest.mark.parametrize(
    ("status", "code"), [("completed", 0), ("completed_with_errors", 2), ("cancelled", 3)]
)
def test_upload_follow_prints_the_id_on_stderr_and_exits_by_the_final_status(
    feed_server, capsys, tmp_path, status, code
):
    feed_server([("whole",)], status=status)
    reviews = tmp_path / "reviews.csv"
    reviews.write_bytes(b"id,text\n1,a\n")
    assert cli_main.main(["upload", str(reviews), "--follow"]) == code
    out, err = capsys.readouterr()
    assert printed_rows(out)[1:] == expected_rows(ROWS)
    assert err.startswith("batch-1\n") and f"batch-1 {status}" in err


def test_follow_after_an_event_id_resumes_there_without_a_header(feed_server, capsys):
    server = feed_server([("whole",)])
    assert cli_main.main(["follow", "batch-1", "--after", "8.1"]) == 0
    assert server.last_ids == ["8.1"]
    assert printed_rows(capsys.readouterr().out) == expected_rows(ROWS[15:])


def test_streams_that_bring_nothing_end_in_an_error_that_says_how_to_resume(feed_server, capsys):
    server = feed_server([("whole",), ("cut", 5)])
    server.events[3:] = []  # the first stream ends after event 4.0; every later one brings nothing
    assert cli_main.main(["follow", "batch-1"]) == 1
    err = capsys.readouterr().err
    assert "resume with: sentiment follow batch-1 --after 4.0" in err
    assert len(server.last_ids) == 7 and set(server.last_ids[1:]) == {"4.0"}


def test_a_batch_not_found_exits_1_without_a_resume_hint(feed_server, capsys):
    feed_server([("404",)])
    assert cli_main.main(["follow", "batch-1", "--after", "4.0"]) == 1
    err = capsys.readouterr().err
    assert "404 Refused: 404" in err and "resume with" not in err


def test_ctrl_c_names_the_last_event_printed_and_follow_after_it_prints_the_rest(feed_server, capsys):
    """The command as installed, interrupted while its stream stalls after two chunks."""
    server = feed_server([("stall", 4), ("whole",)])
    env = dict(os.environ, SENTIMENT_URL=server.url)
    following = subprocess.Popen(
        [SENTIMENT, "follow", "batch-1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = following.stdout.readline()
        first += "".join(following.stdout.readline() for _ in range(8))  # two chunks: 2 multi-line rows each
        following.send_signal(signal.SIGINT)
        # Through the pipes' own readers: communicate would skip what readline left buffered.
        rest, err = following.stdout.read(), following.stderr.read()
        following.wait(timeout=60)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()
    assert following.returncode == 130, err
    (after,) = re.findall(r"resume with: sentiment follow batch-1 --after (\S+)", err)
    assert after == "5.1"
    assert cli_main.main(["follow", "batch-1", "--after", after]) == 0
    out = first + rest + capsys.readouterr().out
    assert printed_rows(out)[1:] == expected_rows(ROWS)


def test_follow_and_out_together_are_a_usage_error(tmp_path, capsys):
    reviews = tmp_path / "reviews.csv"
    reviews.write_bytes(b"id,text\n1,a\n")
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["upload", str(reviews), "--follow", "--out", "x.csv"])
    assert exit_.value.code == 1 and "redirect" in capsys.readouterr().err


def test_a_signal_during_a_held_write_is_raised_once_the_write_is_done():
    signals = _Signals()
    written = []
    with signals.caught(), pytest.raises(KeyboardInterrupt):
        with signals.held():
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            written.append("rows")  # runs: the signal waits for the end of the held block
        written.append("not reached")
    assert written == ["rows"] and signals.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was
