"""The ``sentiment`` command against a small HTTP server of the test's own (http.server, real
sockets): retries and the Idempotency-Key, the form's order, exit codes and usage errors.
The same command against the real service: tests/integration/test_cli.py."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli import main as cli_main
from cli.service import MAX_WAIT, _retry_after

BATCH = {
    "batch_id": "batch-1",
    "status": "processing",
    "total_count": 2,
    "processed_count": 0,
    "invalid_count": 0,
    "failed_count": 0,
}


class Received:
    """What the server received: (method, path, headers, body) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []


Answer = Callable[[BaseHTTPRequestHandler, int], bool]


@pytest.fixture
def server(monkeypatch) -> Iterator[Callable[[list[Answer]], Received]]:
    """Serve the given answers, one per request in turn (the last one again after that)."""
    servers: list[ThreadingHTTPServer] = []

    def start(answers: list[Answer]) -> Received:
        received = Received()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received.requests.append((self.command, self.path, dict(self.headers), body))
                index = min(len(received.requests), len(answers)) - 1
                if not answers[index](self, len(received.requests)):
                    self.close_connection = True  # no answer at all: the connection just closes

            do_GET = do_POST = _handle

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        monkeypatch.setenv("SENTIMENT_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
        monkeypatch.setenv("SENTIMENT_KEY", "sk_test")
        return received

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def json_answer(status: int, body: dict, **headers: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, count: int) -> bool:
        data = json.dumps(body).encode()
        handler.send_response(status)
        kind = "application/problem+json" if status >= 400 else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(data)
        return True

    return answer


def hang_up(handler: BaseHTTPRequestHandler, count: int) -> bool:
    return False


def problem(status: int, slug: str, **headers: str) -> Answer:
    return json_answer(
        status, {"type": f"/problems/{slug}", "title": slug, "status": status, "detail": slug}, **headers
    )


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"id,text\n1,I love it\n2,awful\n")
    return path


def test_an_upload_is_retried_after_503_and_a_lost_connection_with_one_idempotency_key(
    server, csv_file, capsys
):
    received = server([problem(503, "too-many-uploads", Retry_After="0"), hang_up, json_answer(202, BATCH)])
    assert cli_main.main(["upload", str(csv_file)]) == 0
    assert capsys.readouterr().out == "batch-1\n"
    assert len(received.requests) == 3
    keys = {headers["Idempotency-Key"] for _, _, headers, _ in received.requests}
    assert len(keys) == 1 and len(keys.pop()) == 36  # a UUID, the same for every try
    bodies = {body for _, _, _, body in received.requests}
    assert len(bodies) == 1 and b"1,I love it\n2,awful\n" in bodies.pop()  # sent whole each time
    assert {headers["Authorization"] for _, _, headers, _ in received.requests} == {"Bearer sk_test"}


def test_retries_are_bounded_and_then_exit_1(server, csv_file, capsys):
    received = server([problem(503, "database-unavailable", Retry_After="0")])
    assert cli_main.main(["status", "batch-1"]) == 1
    assert len(received.requests) == 6
    assert "503 database-unavailable" in capsys.readouterr().err


def test_a_409_of_an_earlier_try_still_running_is_retried(server, csv_file, capsys):
    received = server([problem(409, "idempotency-key-in-use", Retry_After="0"), json_answer(202, BATCH)])
    assert cli_main.main(["upload", str(csv_file)]) == 0
    assert len(received.requests) == 2
    other = server([problem(409, "batch-finished")])
    assert cli_main.main(["upload", str(csv_file)]) == 1
    assert len(other.requests) == 1


def test_metadata_and_callback_url_come_before_the_file_and_only_when_given(server, csv_file):
    received = server([json_answer(202, BATCH)])
    argv = ["upload", str(csv_file), "--metadata", "project=q3", "--metadata", "team=a=b"]
    assert cli_main.main([*argv, "--callback-url", "https://example.org/hook"]) == 0
    assert cli_main.main(["upload", str(csv_file)]) == 0
    first, second = (body for _, _, _, body in received.requests)
    metadata = first.index(b'name="metadata"\r\n\r\n{"project": "q3", "team": "a=b"}\r\n')
    callback = first.index(b'name="callback_url"\r\n\r\nhttps://example.org/hook\r\n')
    assert metadata < callback < first.index(b'name="file"; filename="reviews.csv"')
    assert b'name="metadata"' not in second and b'name="callback_url"' not in second


def test_columns_and_sheet_go_in_the_query_string_only_when_given(server, csv_file):
    received = server([json_answer(202, BATCH)])
    argv = ["upload", str(csv_file), "--text-column", "body", "--id-column", "Ticket ID", "--sheet", "Q&A"]
    assert cli_main.main(argv) == 0
    assert cli_main.main(["upload", str(csv_file), "--text-column", "body"]) == 0
    assert cli_main.main(["upload", str(csv_file)]) == 0
    paths = [path for _, path, _, _ in received.requests]
    assert paths == [
        "/batch/upload?text_column=body&id_column=Ticket+ID&sheet=Q%26A",
        "/batch/upload?text_column=body",
        "/batch/upload",
    ]
    for _, _, _, body in received.requests:  # never as form fields as well: the service would see both
        assert b'name="text_column"' not in body and b'name="sheet"' not in body


@pytest.mark.parametrize(
    ("name", "data", "media_type"),
    [
        ("reviews.csv", b"id,text\n1,fine\n", "text/csv"),
        ("reviews.CSV.gz", gzip.compress(b"id,text\n1,fine\n"), "application/gzip"),
        ("book.xlsx", b"PK\x03\x04", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("Book.XLSX", b"PK\x03\x04", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("reviews.jsonl", b'{"id": 1, "text": "fine"}\n', "application/x-ndjson"),
        ("reviews.txt", b"id,text\n1,fine\n", "text/csv"),
    ],
)
def test_the_file_part_says_its_media_type_by_suffix(server, tmp_path, name, data, media_type):
    received = server([json_answer(202, BATCH)])
    path = tmp_path / name
    path.write_bytes(data)
    assert cli_main.main(["upload", str(path)]) == 0
    (_, _, _, body), *_ = received.requests
    head = f'name="file"; filename="{name}"\r\nContent-Type: {media_type}\r\n\r\n'.encode()
    assert head + data + b"\r\n--" in body


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frob"],
        ["upload"],
        ["upload", "missing.csv"],
        ["upload", "{file}", "--metadata", "novalue"],
        ["results", "batch-1", "--sentiment", "happy"],
        ["list", "--limit", "0"],
    ],
)
def test_usage_errors_exit_1(argv, csv_file, capsys):
    argv = [arg.replace("{file}", str(csv_file)) for arg in argv]
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(argv)
    assert exit_.value.code == 1
    assert "usage: sentiment" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "code"),
    [("processing", 0), ("completed", 0), ("completed_with_errors", 2), ("cancelled", 3)],
)
def test_status_exit_codes(server, capsys, status, code):
    server([json_answer(200, {**BATCH, "status": status})])
    assert cli_main.main(["status", "batch-1"]) == code
    assert json.loads(capsys.readouterr().out)["status"] == status


def test_an_http_error_exits_1_with_the_problem(server, capsys):
    server([problem(404, "batch-not-found")])
    assert cli_main.main(["status", "batch-x"]) == 1
    assert "404 batch-not-found: batch-not-found" in capsys.readouterr().err


RESULTS = (
    b"id,text,sentiment,score,compound,pos,neu,neg,error\n"
    b'1,"I love it, ""really""\nyes",positive,0.6,0.6,0.5,0.5,0,\n'
    b"2,awful,negative,0.4,-0.4,0,0.3,0.7,\n"
)


def gzip_answer(handler: BaseHTTPRequestHandler, count: int) -> bool:
    assert "gzip" in handler.headers["Accept-Encoding"]
    data = gzip.compress(RESULTS)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/csv")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    return True


def test_results_are_inflated_and_filtered(server, tmp_path, capsys):
    server([gzip_answer])
    assert cli_main.main(["results", "batch-1"]) == 0
    assert capsys.readouterr().out.encode() == RESULTS
    out = tmp_path / "positive.csv"
    assert cli_main.main(["results", "batch-1", "--sentiment", "positive", "--out", str(out)]) == 0
    assert out.read_bytes() == RESULTS.rsplit(b"2,awful", 1)[0]
    assert not list(tmp_path.glob("*.part"))


def test_retry_after_as_seconds_or_date_and_bounded():
    assert _retry_after("5", 1.0) == 5.0
    assert _retry_after(None, 2.0) == 2.0
    assert _retry_after("soon", 2.0) == 2.0
    assert _retry_after("100000", 1.0) == MAX_WAIT
    assert 0 < _retry_after(formatdate(timeval=time.time() + 30, usegmt=True), 1.0) <= 30


def _read_all(fd: int) -> str:
    """What a pseudo-terminal's other end received (until it is empty or closed)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_whenever_stderr_is_a_terminal(server, csv_file):
    """The command as installed, its stderr a pseudo-terminal and its stdout a pipe: bars on
    stderr, stdout only the batch id. Both pipes: no bars, the same stdout."""
    finished = {
        **BATCH,
        "status": "completed",
        "processed_count": 2,
        "summary": {"positive": 1, "negative": 1},
    }
    server([json_answer(202, BATCH), json_answer(200, finished)] * 2)
    command = [str(Path(sys.executable).parent / "sentiment"), "upload", str(csv_file), "--wait"]
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # as a terminal has
    try:
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=secondary, text=True, timeout=60)
        os.close(secondary)
        shown = _read_all(primary)
    finally:
        os.close(primary)
    assert run.returncode == 0 and run.stdout == "batch-1\n"
    assert "reviews.csv: 100%" in shown and "rows scored: 100%" in shown
    piped = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "batch-1\n"
    assert "%|" not in piped.stderr and "completed" in piped.stderr


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("reviews.csv", b"id,text\n", "text/csv"),
        ("reviews.JSONL", b'{"text": "a"}\n', "application/x-ndjson"),
        ("reviews.ndjson", b'{"text": "a"}\n', "application/x-ndjson"),
        ("book.xlsx", b"PK\x03\x04", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("reviews.jsonl.gz", b"\x1f\x8b\x08\x00", "application/gzip"),
    ],
)
def test_the_file_part_says_its_type_by_the_name(tmp_path, name, data, expected):
    from cli.transfer import upload_form

    path = tmp_path / name
    path.write_bytes(data)
    body = b"".join(upload_form(path, {}, lambda _: None).body())
    assert f"Content-Type: {expected}\r\n".encode() in body
