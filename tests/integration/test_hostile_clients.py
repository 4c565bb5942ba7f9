"""Clients that stall, dribble, cut their bodies short or send too much, against a real gunicorn
started as the Procfile's web process (webapp.gunicorn_conf, one worker), over real sockets.

Nothing here measures time: the tests wait for conditions (with generous bounds) and
check what was answered, what was read and what was stored.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import WebServer
from tests.integration.helpers import assert_nothing_written, score_everything, uploads_copying
from tests.rawhttp import Dribbler, Sender, connect, exchange, head, read_answer, still_open, wait_closed

MIB = 1024 * 1024


def csv_upload(length: int | str) -> bytes:
    return head("POST", "/batch/upload", Content_Type="text/csv", Content_Length=str(length))


def test_fifty_stalled_and_dribbling_clients_do_not_starve_the_service(serve, db):
    web = serve(CLIENT_TIMEOUT="300")
    finished = requests.post(
        f"{web.base}/batch/upload", data=make_csv(sample_texts(150)), headers={"Content-Type": "text/csv"}
    ).json()["batch_id"]
    score_everything(db)

    upload = csv_upload(1_000_000)
    dribbler, clients = Dribbler(), []
    for index in range(50):
        sock = connect(web.port)
        if index % 4 == 1:
            sock.sendall(upload[:40])  # stops inside its head
        elif index % 4 == 2:
            dribbler.add(sock, upload)  # its head, a byte a second
        elif index % 4 == 3:
            sock.sendall(upload)
            dribbler.add(sock, b"id,text\n" + b"x" * 1000)  # its body, a byte a second
        clients.append(sock)  # (index % 4 == 0: connected, silent)
    dribbler.start()
    try:
        session = requests.Session()
        for _ in range(3):
            assert session.get(f"{web.base}/healthz", timeout=10).status_code == 200
            status = session.get(f"{web.base}/batch/{finished}", timeout=10).json()
            assert status["status"] == "completed"
            page = session.get(f"{web.base}/batch/{finished}/results?per_page=100", timeout=10).json()
            assert len(page["results"]) == 100 and page["next_cursor"]
        normal = make_csv(sample_texts(10_000, seed=3))
        answer = session.post(
            f"{web.base}/batch/upload", data=normal, headers={"Content-Type": "text/csv"}, timeout=120
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["total_count"] == 10_000
        # ... while every one of the fifty still held its connection.
        assert [still_open(sock) for sock in clients] == [True] * 50
    finally:
        dribbler.stop()
        for sock in clients:
            sock.close()


def test_silent_and_slow_clients_are_cut_off_with_408_and_nothing_is_stored(serve, db):
    web = serve(CLIENT_TIMEOUT="2")
    upload = csv_upload(1_000_000)
    silent = connect(web.port)
    in_head = connect(web.port)
    in_head.sendall(upload[:40])
    in_body = connect(web.port)
    in_body.sendall(upload + b"id,text\n1,a")
    dribbling = connect(web.port)
    dribbling.sendall(upload)
    # Past the first 64 KiB a thread reads the body, inside the upload's transaction.
    in_transaction = connect(web.port)
    in_transaction.sendall(upload + make_csv(sample_texts(2_000)))
    dribbler = Dribbler()
    dribbler.add(dribbling, b"id,text\n" + b"y" * 1000)
    dribbler.start()
    try:
        for sock, limit in [
            (silent, "CLIENT_TIMEOUT"),
            (in_head, "CLIENT_TIMEOUT"),
            (in_body, "CLIENT_TIMEOUT"),
            (dribbling, "MIN_UPLOAD_RATE"),
            (in_transaction, "CLIENT_TIMEOUT"),
        ]:
            data = wait_closed(sock, timeout=60)
            assert data.startswith(b"HTTP/1.1 408 "), data[:200]
            assert b"application/problem+json" in data and limit.encode() in data
    finally:
        dribbler.stop()
    assert_nothing_written(db)
    # The service is still there, and the worker was never restarted.
    assert requests.get(f"{web.base}/healthz", timeout=10).status_code == 200
    assert web.proc.poll() is None


def _multipart(content: bytes, *, closed: bool) -> tuple[str, bytes]:
    part = b'--B0undary\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n' + content
    return "multipart/form-data; boundary=B0undary", part + (b"\r\n--B0undary--\r\n" if closed else b"")


def _chunked(data: bytes, size: int = 4096) -> bytes:
    return b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)
    )


ROWS = make_csv(sample_texts(500, seed=5))


@pytest.mark.parametrize(
    ("shape", "slug"),
    [
        ("before its Content-Length", "truncated-body"),
        ("multipart without its closing boundary", "invalid-multipart"),
        ("multipart before its Content-Length", "truncated-body"),
        ("chunked without its last chunk", "truncated-body"),
        ("chunked, cut inside a chunk", "truncated-body"),
    ],
)
def test_a_body_cut_short_is_a_400_and_never_a_batch(serve, db, shape, slug):
    web = serve()
    if shape == "before its Content-Length":
        request = csv_upload(1_000_000) + ROWS
    elif shape.startswith("multipart"):
        content_type, body = _multipart(ROWS, closed=False)
        length = len(body) if "boundary" in shape else len(body) + 100_000
        request = head("POST", "/batch/upload", Content_Type=content_type, Content_Length=str(length)) + body
    else:
        body = _chunked(ROWS)
        if "inside" in shape:
            body = body[: len(body) // 2] + b"1000\r\nid,te"
        request = head("POST", "/batch/upload", Content_Type="text/csv", Transfer_Encoding="chunked") + body
    answer = exchange(web.port, request, half_close=True)
    assert answer is not None and answer.status == 400
    assert answer.problem()["type"] == f"/problems/{slug}"
    assert_nothing_written(db)


def _rejected_uploads(web: WebServer) -> float:
    for line in requests.get(f"{web.base}/metrics", timeout=10).text.splitlines():
        if line.startswith('sentiment_uploads_total{outcome="rejected"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_body_cut_short_by_a_client_that_hung_up_is_never_a_batch(serve, db):
    web = serve()
    with connect(web.port) as sock:
        sock.sendall(csv_upload(1_000_000) + ROWS)
    wait_for(lambda: _rejected_uploads(web) == 1, timeout=30)
    assert_nothing_written(db)


@pytest.mark.parametrize("media", ["text/csv", "multipart"])
def test_a_huge_body_without_newlines_is_refused_once_a_line_passes_the_limit(serve, db, media):
    web = serve()
    total = 64 * MIB
    prefix = b"id,text\n1,"
    if media == "multipart":
        content_type, prefix = _multipart(prefix, closed=False)
    else:
        content_type = "text/csv"
    with connect(web.port) as sock:
        sock.sendall(
            head("POST", "/batch/upload", Content_Type=content_type, Content_Length=str(len(prefix) + total))
        )
        sock.sendall(prefix)
        sender = Sender(sock, (b"a" * MIB for _ in range(total // MIB)))
        answer = read_answer(sock)
        sent_when_answered = sender.sent
    assert answer is not None and answer.status == 400
    problem = answer.problem()
    assert problem["type"] == "/problems/invalid-csv" and problem["detail"].startswith("Line 2:")
    assert "10,000,000 characters" in problem["detail"]
    # The server stopped reading at the limit (10 MB, plus what sockets hold), not at 64 MB.
    assert sent_when_answered < total // 2
    assert_nothing_written(db)


def test_uploads_past_the_cap_get_503_at_once(serve, db):
    # CLIENT_TIMEOUT is the window in which the probes below must see the slot taken: wide enough
    # for a machine busy with other work.
    web = serve(MAX_UPLOADS="1", CLIENT_TIMEOUT="30")
    # One upload stalls after 85 KB: a thread reads it and holds the only upload slot. Its COPY
    # shows that it does; a probe sent before then could take the slot first (and the stalled
    # upload would be the one refused).
    stalled = connect(web.port)
    stalled.sendall(csv_upload(10_000_000) + make_csv(sample_texts(1_000)))
    wait_for(lambda: uploads_copying(db) == 1, timeout=60)
    # An empty upload is a 400 while the slot is free, a 503 once it is taken: nothing is stored either way.
    probe = csv_upload(0)
    refused = wait_for(
        lambda: (a := exchange(web.port, probe)) is not None and a.status == 503 and a, timeout=60
    )
    assert refused.problem()["type"] == "/problems/too-many-uploads"
    assert int(refused.headers["retry-after"]) > 0
    good = csv_upload(len(ROWS)) + ROWS
    answer = exchange(web.port, good)
    assert answer is not None and answer.status == 503 and "retry-after" in answer.headers
    # The stalled one is cut off; then the slot is free again.
    assert wait_closed(stalled, timeout=90).startswith(b"HTTP/1.1 408 ")
    assert_nothing_written(db)
    accepted = wait_for(
        lambda: (a := exchange(web.port, good)) is not None and a.status != 503 and a, timeout=30
    )
    assert accepted.status == 202
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1


def test_a_client_waiting_for_100_continue_gets_it(serve, db):
    web = serve()
    with connect(web.port) as sock:
        sock.sendall(
            head(
                "POST",
                "/batch/upload",
                Content_Type="text/csv",
                Content_Length=str(len(ROWS)),
                Expect="100-continue",
            )
        )
        assert sock.recv(25).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(ROWS)
        answer = read_answer(sock)
    assert answer is not None and answer.status == 202


def test_a_head_too_large_is_refused_before_a_thread_takes_it(serve):
    web = serve()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"z" * (70 * 1024) + b"\r\n\r\n"
    answer = exchange(web.port, request)
    assert answer is not None and answer.status == 431
    assert answer.problem()["type"] == "/problems/head-too-large"


def _endless_chunks(first: bytes, total: int) -> Iterator[bytes]:
    yield b"%x\r\n%s\r\n" % (len(first), first)
    block = b"\x00" * MIB
    for _ in range(total // MIB):
        yield b"%x\r\n%s\r\n" % (len(block), block)
    yield b"0\r\n\r\n"


def test_a_refused_browser_upload_is_answered_without_draining_the_whole_body(serve, db):
    web = serve()
    content_type, start = _multipart(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000, closed=False)
    request = head(
        "POST", "/batch/upload", Content_Type=content_type, Transfer_Encoding="chunked", Accept="text/html"
    )
    with connect(web.port) as sock:
        sock.sendall(request)
        sender = Sender(sock, _endless_chunks(start, 1024 * MIB))
        answer = read_answer(sock)
        sent_when_answered = sender.sent
        sock.shutdown(socket.SHUT_RDWR)
    assert answer is not None and answer.status == 400
    assert answer.headers["content-type"].startswith("text/html") and b"PNG" in answer.body
    # At most DRAIN_BYTES (8 MiB) were drained, not up to MAX_UPLOAD_BYTES (1 GiB).
    assert sent_when_answered < 128 * MIB
    assert_nothing_written(db)


def test_a_big_or_slow_form_body_for_another_view_holds_no_thread(serve):
    """Views other than the upload read at most 16 KiB of body: a bigger one is refused by its
    Content-Length at once (the rest is never waited for), and a smaller one is received whole by
    the worker's loop before a thread sees it, so a client that then falls silent is cut off there."""
    web = serve(API_TOKEN="a-token-for-this-test-of-32-characters", CLIENT_TIMEOUT="2")
    big = head("POST", "/login", Content_Type="application/x-www-form-urlencoded", Content_Length="400000")
    with connect(web.port) as sock:
        sock.sendall(big + b"token=" + b"x" * 100_000)  # past what the loop receives, then silence
        answer = read_answer(sock)
    assert answer is not None and answer.status == 413
    assert answer.problem()["type"] == "/problems/request-entity-too-large"
    small = head("POST", "/login", Content_Type="application/x-www-form-urlencoded", Content_Length="9000")
    with connect(web.port) as sock:
        sock.sendall(small + b"token=" + b"x" * 1_000)  # then silence
        answer = read_answer(sock)
    assert answer is not None and answer.status == 408
    assert answer.problem()["type"] == "/problems/client-timeout"
    assert "POST /login 408" not in web.logfile.read_text()  # the loop answered, no view ran


def test_a_client_that_stops_reading_a_download_is_dropped_and_frees_its_slot(serve, db):
    web = serve(CLIENT_TIMEOUT="5", MAX_EXPORTS="1")
    body = make_csv([f"good {index}" for index in range(500)])
    public_id = requests.post(
        f"{web.base}/batch/upload", data=body, headers={"Content-Type": "text/csv"}, timeout=60
    ).json()["batch_id"]
    score_everything(db)
    db.execute("UPDATE batch_inputs SET text = repeat('slow reader ', 1600)")  # ~10 MB of CSV
    url = f"/batch/{public_id}/results.csv"
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", web.port))
    reader.sendall(head("GET", url))
    assert reader.recv(12) == b"HTTP/1.1 200"  # ... and then it reads no more
    try:
        # Its write times out, the connection is dropped and the one export slot is free again.
        answer = wait_for(
            lambda: (a := requests.get(f"{web.base}{url}", timeout=60)).status_code == 200 and a, timeout=60
        )
        assert len(answer.content) > 9_000_000
        log = web.logfile.read_text()
        assert "results.csv 503" in log  # refused at once while the stalled download held the slot
        assert "too slow" in log
    finally:
        reader.close()
