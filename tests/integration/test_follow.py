"""Following a batch as it is scored, over real gunicorn, runners and PostgreSQL: every row
exactly once through disconnects, resumes, stream time limits, SIGKILLed runners and a
restarted web server; followers hold no thread; the stream cap, ownership and bad event ids."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import zlib
from pathlib import Path

import pytest
import requests

from core.clients import create_key
from jobrunner.scoring import fast
from tests.helpers import make_csv, sample_texts, wait_for
from tests.sse import Stream
from webapp.feed.priority import LOWEST_NICE

SLOW = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.02"}


def _label(compound: float) -> str:
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def _upload(base: str, texts: list[str], key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = requests.post(
        f"{base}/batch/upload", files={"file": ("x.csv", make_csv(texts))}, headers=headers, timeout=120
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["batch_id"]


def _scored(base: str, texts: list[str], runners) -> str:  # type: ignore[no-untyped-def]
    """Upload ``texts``, score them with one runner, and wait until the batch has completed."""
    batch_id = _upload(base, texts)
    runners.start()
    wait_for(lambda: requests.get(f"{base}/batch/{batch_id}", timeout=5).json()["status"] == "completed")
    return batch_id


class Reader:
    """Reads a batch's events, resuming with Last-Event-ID, and keeps every row it was sent."""

    def __init__(
        self, base: str, batch_id: str, headers: dict[str, str] | None = None, deflate: bool = False
    ) -> None:
        self.url = f"{base}/batch/{batch_id}/events"
        self.headers = {**(headers or {}), **({"Accept-Encoding": "deflate"} if deflate else {})}
        self.deflate = deflate
        self.last_id: str | None = None
        self.rows: list[dict] = []
        self.final: dict | None = None
        self.streams = 0

    def read(self, hang_up_after: int | None = None) -> bool:
        """One stream, until it ends (True once ``end`` came) or ``hang_up_after`` events."""
        headers = dict(self.headers)
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        stream = Stream(self.url, headers)
        assert stream.status == 200, stream.body()
        assert stream.headers.get("Content-Encoding") == ("deflate" if self.deflate else None)
        assert "Accept-Encoding" in stream.headers["Vary"]
        self.streams += 1
        try:
            events = iter(stream)
            for count, event in enumerate(events, 1):
                if event.name == "rows":
                    self.rows.extend(event.json()["rows"])
                    self.last_id = event.id
                elif event.name == "end":
                    self.final = event.json()
                    # Then the body ends, whole: its last chunk comes and nothing after it, and a
                    # deflated body's zlib stream ends there too, its checksum right.
                    assert list(events) == [] and not stream.cut
                    assert stream.inflated_whole == self.deflate
                    return True
                if hang_up_after is not None and count >= hang_up_after:
                    return False
            # The server cut it (STREAM_MAX_SECONDS, a stopping worker): no last chunk, and a
            # deflated body's zlib stream unended, so that no client takes it for whole.
            assert stream.cut and not stream.inflated_whole
            return False
        finally:
            stream.close()

    def to_the_end(self) -> None:
        while not self.read():
            pass


def _assert_every_row_once(rows: list[dict], texts: list[str]) -> None:
    assert sorted(r["row"] for r in rows) == list(range(1, len(texts) + 1))
    scores = fast(texts)
    for row in rows:
        expected = scores[row["row"] - 1]["compound"]
        assert row["text"] == texts[row["row"] - 1]
        assert row["compound"] == pytest.approx(expected, abs=1e-4)
        assert row["sentiment"] == _label(row["compound"])


def test_a_follower_of_200000_rows_scored_by_two_runners_gets_every_row_once(web_server, runners):
    """Two followers at once, one deflated: they share each chunk's frame, bytes and deflated."""
    texts = sample_texts(200_000)
    batch_id = _upload(web_server.base, texts)
    readers = [Reader(web_server.base, batch_id), Reader(web_server.base, batch_id, deflate=True)]
    threads = [threading.Thread(target=reader.to_the_end) for reader in readers]
    for thread in threads:
        thread.start()
    runners.start()
    runners.start()
    for thread, reader in zip(threads, readers, strict=True):
        thread.join()
        assert reader.final["status"] == "completed" and reader.final["processed_count"] == 200_000
        _assert_every_row_once(reader.rows, texts)


@pytest.mark.parametrize("deflate", [False, True], ids=["identity", "deflate"])
def test_a_follower_that_hangs_up_and_resumes_ten_times_gets_every_row_once(serve, runners, deflate):
    server = serve(STREAM_MAX_SECONDS="2")  # the server cuts streams too
    texts = sample_texts(30_000, seed=11)
    batch_id = _upload(server.base, texts)
    runners.start(**SLOW)
    runners.start(**SLOW)
    reader, chance = Reader(server.base, batch_id, deflate=deflate), random.Random(25)
    for _ in range(10):
        if reader.read(hang_up_after=chance.randint(1, 40)):
            break
    reader.to_the_end()
    assert reader.streams >= 10
    _assert_every_row_once(reader.rows, texts)


def test_every_row_once_though_runners_are_killed_mid_batch(web_server, runners):
    texts = sample_texts(20_000, seed=3)
    batch_id = _upload(web_server.base, texts)
    doomed = [runners.start(**SLOW), runners.start(**SLOW)]
    reader, chance = Reader(web_server.base, batch_id), random.Random(9)
    reader.read(hang_up_after=5)
    for proc in doomed:
        os.kill(proc.pid, signal.SIGKILL)
    runners.start(**SLOW)
    while not reader.read(hang_up_after=chance.randint(5, 60)):
        pass
    _assert_every_row_once(reader.rows, texts)


def test_a_stream_that_starts_after_the_end_replays_every_row_and_ends(web_server, runners):
    texts = sample_texts(1_500, seed=5)
    batch_id = _scored(web_server.base, texts, runners)
    reader = Reader(web_server.base, batch_id)
    assert reader.read() and reader.streams == 1
    _assert_every_row_once(reader.rows, texts)
    # The NDJSON feed: the same rows as download lines, and the end of the body at the end.
    # requests asks for gzip or deflate, and inflates the deflated stream itself.
    lines = requests.get(f"{web_server.base}/batch/{batch_id}/results.ndjson?follow=true", timeout=30)
    assert lines.headers["Content-Type"] == "application/x-ndjson"
    assert lines.headers["Content-Encoding"] == "deflate"
    parsed = [json.loads(line) for line in lines.text.splitlines()]
    assert sorted(p["id"] for p in parsed) == sorted(r["id"] for r in reader.rows)
    assert set(parsed[0]) == {"id", "text", "sentiment", "score", "compound", "pos", "neu", "neg", "error"}


def _http10(base: str, path: str) -> tuple[bytes, bytes]:
    """An HTTP/1.0 GET accepting deflate, read until the server closes: (head, body)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nAccept-Encoding: deflate\r\n\r\n".encode())
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def test_over_http10_a_whole_deflated_stream_is_one_zlib_stream_ending_at_the_close(web_server, runners):
    texts = sample_texts(500, seed=6)
    batch_id = _scored(web_server.base, texts, runners)
    for path in (f"/batch/{batch_id}/events", f"/batch/{batch_id}/results.ndjson?follow=true"):
        head, body = _http10(web_server.base, path)
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        assert b"\r\nContent-Encoding: deflate" in head and b"chunked" not in head.lower(), head
        inflater = zlib.decompressobj()
        text = inflater.decompress(body).decode()
        assert inflater.eof and not inflater.unused_data  # whole: the zlib end, its checksum right
        if path.endswith("events"):
            assert "\nevent: end\n" in text and text.count('"row":') == 500
        else:
            assert sorted(int(json.loads(line)["id"][1:]) for line in text.splitlines()) == list(
                range(1, 501)
            )


def test_ndjson_follow_streams_a_running_batch_to_its_end(web_server, runners):
    texts = sample_texts(5_000, seed=8)
    batch_id = _upload(web_server.base, texts)
    runners.start(**SLOW)
    with requests.get(
        f"{web_server.base}/batch/{batch_id}/results.ndjson?follow=true", stream=True, timeout=60
    ) as answer:
        parsed = [json.loads(line) for line in answer.iter_lines() if line]
    assert sorted(int(p["id"][1:]) for p in parsed) == list(range(1, 5_001))
    status = requests.get(f"{web_server.base}/batch/{batch_id}", timeout=5).json()
    assert status["status"] == "completed"


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_fifty_open_streams_hold_no_thread_and_leave_the_service_answering(web_server, runners):
    base = web_server.base
    batch_id = _upload(base, sample_texts(3_000, seed=2))
    worker = _worker_pid(web_server.proc.pid)
    # Warm up: the request threads gunicorn starts on demand, and the hub with the first stream.
    warmups = [threading.Thread(target=requests.get, args=(f"{base}/healthz",)) for _ in range(16)]
    for thread in warmups:
        thread.start()
    for thread in warmups:
        thread.join()
    first = Stream(f"{base}/batch/{batch_id}/events")
    next(iter(first))
    before = _threads(worker)
    streams = [Stream(f"{base}/batch/{batch_id}/events") for _ in range(49)]
    assert all(s.status == 200 for s in streams)
    assert _threads(worker) == before
    for path in ("/healthz", f"/batch/{batch_id}"):
        answer = requests.get(base + path, timeout=10)
        assert answer.status_code == 200
        print(f"{path} with 50 streams open: {answer.elapsed.total_seconds() * 1000:.1f} ms")
    runners.start()
    for stream in [first, *streams]:  # every one of them sees the batch through to its end
        assert [e.name for e in stream][-1] == "end"
    assert _threads(worker) == before


@pytest.mark.parametrize("nice", ["0", "7"])
def test_the_thread_serving_streams_runs_stream_nice_steps_below_the_others(serve, nice):
    if os.nice(0) + int(nice) > LOWEST_NICE:  # under `nice`, the steps would be cut at 19
        pytest.skip(f"the tests run at nice {os.nice(0)}: {nice} steps more pass {LOWEST_NICE}")
    server = serve(STREAM_NICE=nice)
    batch_id = _upload(server.base, ["good", "bad"])
    stream = Stream(f"{server.base}/batch/{batch_id}/events")
    next(iter(stream))  # the hub has started: it sent the first event
    worker = _worker_pid(server.proc.pid)
    base = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
    nices = sorted(os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{worker}/task"))
    stream.close()
    lowered = [n for n in nices if n != base]
    assert lowered == ([] if nice == "0" else [base + int(nice)]), nices
    assert len(nices) > 2  # the request threads, the hub and the main thread


def test_past_max_streams_a_new_stream_is_503_with_retry_after(serve):
    server = serve(MAX_STREAMS="2")
    batch_id = _upload(server.base, ["good", "bad"])
    open_ones = [Stream(f"{server.base}/batch/{batch_id}/events") for _ in range(2)]
    refused = requests.get(f"{server.base}/batch/{batch_id}/events", timeout=10)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("too-many-streams")
    for stream in open_ones:
        stream.close()

    def admitted() -> bool:
        with requests.get(f"{server.base}/batch/{batch_id}/events", stream=True, timeout=5) as answer:
            return answer.ok

    wait_for(admitted)


def test_sigterm_closes_streams_between_events_and_a_resume_elsewhere_completes(serve, runners):
    first = serve()
    texts = sample_texts(20_000, seed=4)
    batch_id = _upload(first.base, texts)
    runners.start(**SLOW)
    reader = Reader(first.base, batch_id)
    stream = Stream(reader.url)
    events = iter(stream)
    for _ in range(3):
        event = next(events)
        if event.name == "rows":
            reader.rows.extend(event.json()["rows"])
            reader.last_id = event.id
    first.proc.send_signal(signal.SIGTERM)
    for event in events:  # what was buffered arrives whole; then the stream ends without `end`
        assert event.name != "end"
        if event.name == "rows":
            reader.rows.extend(event.json()["rows"])
            reader.last_id = event.id
    assert stream.cut  # no last chunk: a client can tell the stream was cut short
    first.proc.wait(timeout=30)
    reader.url = f"{serve().base}/batch/{batch_id}/events"
    reader.to_the_end()
    _assert_every_row_once(reader.rows, texts)


@pytest.mark.parametrize(
    ("event_id", "why"),
    [
        ("abc", "must be an event id"),
        ("1.2.3", "must be"),
        ("99.1", "names no chunk"),  # beyond the last commit
        ("1.2", "names no chunk"),  # entry 1 holds one chunk
        ("1.0", "names no chunk"),
        ("0.5", "names no chunk"),
    ],
)
def test_a_bad_event_id_is_a_400(client, upload, db, event_id, why):
    from tests.integration.helpers import process_next

    batch_id = upload(make_csv(["good"]))["batch_id"]
    process_next(db)  # entry 1: one chunk
    assert client.get(f"/batch/{batch_id}/events", headers={"Last-Event-ID": "1.1"}).status_code == 200
    answer = client.get(f"/batch/{batch_id}/events", headers={"Last-Event-ID": event_id})
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    assert answer.get_json()["type"].endswith("invalid-event-id") and why in answer.get_json()["detail"]


def test_a_stream_is_its_owners_alone(client, db):
    mine, theirs = create_key(db, "follow-owner"), create_key(db, "follow-other")
    db.commit()
    answer = client.post(
        "/batch/upload",
        data={"file": (__import__("io").BytesIO(make_csv(["good"])), "x.csv")},
        headers={"Authorization": f"Bearer {mine}"},
    )
    batch_id = answer.get_json()["batch_id"]
    other = client.get(f"/batch/{batch_id}/events", headers={"Authorization": f"Bearer {theirs}"})
    assert other.status_code == 404
    follow = client.get(
        f"/batch/{batch_id}/results.ndjson?follow=true", headers={"Authorization": f"Bearer {theirs}"}
    )
    assert follow.status_code == 404
    assert client.get(f"/batch/{batch_id}/results.ndjson?follow=maybe").status_code in (400, 401)


def test_head_of_a_stream_is_its_head_alone(web_server):
    batch_id = _upload(web_server.base, ["good"])
    with requests.Session() as session:
        answer = session.head(
            f"{web_server.base}/batch/{batch_id}/events", headers={"Accept-Encoding": "deflate"}, timeout=10
        )
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
        # The head a GET gets: deflated, and no length (a GET's body is chunked, never empty).
        assert answer.headers["Content-Encoding"] == "deflate" and "Content-Length" not in answer.headers
        # The same connection answers the next request: nothing followed the head.
        assert session.get(f"{web_server.base}/healthz", timeout=10).json() == {"status": "ok"}
        # Accept-Encoding as RFC 9110 reads it: deflate when acceptable and not less wanted
        # than the body as it is; codings are case-insensitive, "*" names any coding not listed.
        codings = {
            "gzip, deflate, br": "deflate",
            "*": "deflate",
            "DEFLATE;q=0.001": "deflate",
            "identity;q=0.5, deflate": "deflate",
            "deflate;q=0": None,
            "*, deflate;q=0": None,
            "gzip": None,
            "": None,
            "identity;q=0": None,  # nothing it accepts is offered: the body as it is
            "deflate;q=x, garbage": None,
            "identity, deflate;q=0.5": None,
            "deflate;q=0.5, *": None,
        }
        for accepted, coding in codings.items():
            answer = session.head(
                f"{web_server.base}/batch/{batch_id}/results.ndjson?follow=true",
                headers={"Accept-Encoding": accepted},
                timeout=10,
            )
            assert answer.headers.get("Content-Encoding") == coding, accepted
            assert answer.headers["Vary"] == "Accept-Encoding"


def test_a_cancelled_batch_is_complete_once_no_chunk_is_left_in_hand(client, upload, db):
    from core.batches.queue import claim_chunk
    from tests.integration.helpers import process

    batch_id = upload(make_csv(sample_texts(300, seed=12)))["batch_id"]
    held = claim_chunk(db, "test:0", 600)
    db.commit()
    assert client.post(f"/batch/{batch_id}/cancel").get_json()["status"] == "cancelled"
    page = client.get(f"/batch/{batch_id}/results").get_json()
    assert page["complete"] is False and page["results"] == []
    assert process(db, held)  # the chunk in hand still commits its rows
    db.commit()
    page = client.get(f"/batch/{batch_id}/results?per_page=500").get_json()
    assert page["complete"] is True and len(page["results"]) == 100
    # With no hub (the test client), the stream runs in the request's thread, never deflated.
    streamed = client.get(f"/batch/{batch_id}/events", headers={"Accept-Encoding": "deflate"})
    assert "Content-Encoding" not in streamed.headers and "Accept-Encoding" in streamed.headers["Vary"]
    assert streamed.get_data().count(b"event: rows") == 1 and b"event: end" in streamed.get_data()


def test_one_key_holds_at_most_half_the_streams(serve, db):
    first, second = create_key(db, "streams-a"), create_key(db, "streams-b")
    db.commit()
    server = serve(MAX_STREAMS="4")
    mine = _upload(server.base, ["good"], key=first)
    theirs = _upload(server.base, ["bad"], key=second)
    url = f"{server.base}/batch/{{}}/events"
    held = [Stream(url.format(mine), {"Authorization": f"Bearer {first}"}) for _ in range(2)]
    assert all(stream.status == 200 for stream in held)
    refused = requests.get(url.format(mine), headers={"Authorization": f"Bearer {first}"}, timeout=10)
    assert refused.status_code == 503 and refused.json()["type"].endswith("too-many-streams")
    other = Stream(url.format(theirs), {"Authorization": f"Bearer {second}"})
    assert other.status == 200
    for stream in [*held, other]:
        stream.close()
