"""What the worker's event loop decides before a thread takes a request, without sockets:
when a request has arrived enough, when a client is late, and how a refused body is drained."""

from __future__ import annotations

import io

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser
from hypothesis import given
from hypothesis import strategies as st

from webapp.server.reception import HEAD_LIMIT, PREFETCH_BYTES, Reception
from webapp.server.worker import ClientLimits
from webapp.upload.request_body import DRAIN_BYTES, drain, read_body

POST = b"POST /batch/upload HTTP/1.1\r\nHost: x\r\n"


def fed(data: bytes, size: int) -> list[str]:
    """The states a reception goes through as ``data`` arrives ``size`` bytes at a time."""
    reception = Reception(0.0)
    states = []
    for start in range(0, len(data), size):
        reception.add(data[start : start + size], 1.0)
        states.append(reception.state())
        if states[-1] != "wait":
            break
    return states


@pytest.mark.parametrize("size", [1, 3, 17, 4096])
@pytest.mark.parametrize(
    ("request_bytes", "final"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "ready"),
        (POST + b"Content-Length: 5\r\n\r\nhello", "ready"),
        (POST + b"content-length:5\r\n\r\nhell", "wait"),
        (POST + b"Content-Length: 1000000\r\n\r\n" + b"x" * (PREFETCH_BYTES - 1), "wait"),
        (POST + b"Content-Length: 1000000\r\n\r\n" + b"x" * PREFETCH_BYTES, "ready"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "ready"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "ready"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "wait"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n", "wait"),
        # Malformed or ambiguous framing goes to gunicorn at once, which refuses it.
        (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "ready"),
        # A Content-Length gunicorn would not take (or two) is answered 400 in the loop.
        (POST + b"Content-Length: -1\r\n\r\n", "malformed"),
        (POST + b"Content-Length: 5x\r\n\r\n", "malformed"),
        (POST + b"Content-Length:\r\n\r\n", "malformed"),
        (POST + b"Content-Length: \xb2\r\n\r\n", "malformed"),
        (POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "malformed"),
        (POST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", "malformed"),
        # Any number of ASCII digits is a length, leading zeros and all: its body is waited for.
        (POST + b"Content-Length: 00000000000000000001000\r\n\r\n" + b"x" * 999, "wait"),
        (POST + b"Content-Length: 00000000000000000001000\r\n\r\n" + b"x" * 1000, "ready"),
        (POST + b"Content-Length: 0000000000000000000000000\r\n\r\n", "ready"),
        (POST + b"Content-Length: 99999999999999999999999\r\n\r\n" + b"x" * 10, "wait"),
        (POST + b"Content-Length: 99999999999999999999999\r\n\r\n" + b"x" * PREFETCH_BYTES, "ready"),
        (POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "ready"),
        (POST + b"Transfer-Encoding: gzip\r\n\r\n", "ready"),
        (POST + b"X-Half: a head that never ends\r\n", "wait"),
        (POST + b"X-Long: " + b"z" * HEAD_LIMIT, "head-too-large"),
    ],
)
def test_when_a_request_has_arrived_enough_for_a_thread(request_bytes, final, size):
    assert fed(request_bytes, size)[-1] == final


def gunicorn_reads(head: bytes) -> int | None:
    """The body length gunicorn's own parser (gunicorn.http.parser.RequestParser, as the worker's
    threads run it) reads for a request with this head, or None when it refuses the request."""
    try:
        request = next(RequestParser(Config(), iter([head]), ("127.0.0.1", 0)))
    except ParseException:
        return None
    return request.body.reader.length


def loop_reads(head: bytes) -> int | None:
    """The body length the worker's loop waits for, or None when it answers 400 itself."""
    reception = Reception(0.0, head)
    return None if reception.state() == "malformed" else reception.body_length


def with_length(value: bytes) -> bytes:
    return POST + b"Content-Length: " + value + b"\r\n\r\n"


# Values of the header line: any bytes but those that would end the line (CR, LF); and lengths
# as clients mistype them: signs, underscores, blanks, digits of other scripts.
LENGTH_VALUES = st.one_of(
    st.binary(max_size=30).map(lambda value: value.translate(None, b"\r\n")),
    st.from_regex(rb"[ \t]{0,2}[+\-]?[0-9_]{0,40}[ \t]{0,2}", fullmatch=True),
    st.text("0123456789\u00b2\u0663\u0966", max_size=8).map(lambda text: text.encode("utf-8")),
)


@given(LENGTH_VALUES)
def test_a_content_length_is_read_exactly_as_gunicorn_reads_it(value):
    head = with_length(value)
    assert loop_reads(head) == gunicorn_reads(head)


def test_content_lengths_gunicorn_takes_and_refuses():
    """The comparison above sees both sides: lengths gunicorn takes, and ones it refuses."""
    assert [gunicorn_reads(with_length(value)) for value in (b"5", b"0005", b" 5\t")] == [5, 5, 5]
    refused = (b"+5", b"5_0", b"\xb2", b"", b"9" * 5000)
    assert {gunicorn_reads(with_length(value)) for value in refused} == {None}


@pytest.mark.parametrize("value", [b"5\x0b", b"\x0c5"])
def test_vertical_tab_or_form_feed_around_a_length(value):
    assert loop_reads(with_length(value)) == gunicorn_reads(with_length(value))


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    trailers=st.lists(st.sampled_from([b"X-A: 1", b"X-Checksum: abc"]), max_size=2),
    size=st.integers(min_value=1, max_value=50),
)
def test_a_chunked_body_is_whole_exactly_when_its_trailers_end(chunks, trailers, size):
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n"
    body += b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    request = POST + b"Transfer-Encoding: chunked\r\n\r\n" + body
    states = fed(request, size)
    assert states[-1] == "ready"
    # Ready only once the last byte was there.
    assert len(states) == -(-len(request) // size)


def test_100_continue_is_wanted_once_and_only_before_the_body():
    reception = Reception(0.0, POST + b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n")
    assert reception.state() == "wait"
    assert reception.wants_continue() and not reception.wants_continue()
    http10 = Reception(
        0.0, POST.replace(b"1.1", b"1.0") + b"Expect: 100-continue\r\nContent-Length: 9\r\n\r\n"
    )
    assert http10.state() == "wait" and not http10.wants_continue()


def test_a_client_is_late_after_the_timeout_or_below_the_rate():
    reception = Reception(100.0)
    assert reception.deadline(timeout=30, min_rate=1024) == 130.0
    reception.add(b"x" * 10, 110.0)  # 10 bytes in 10 s: the rate, not the silence, is due first
    assert reception.deadline(30, 1024) == pytest.approx(130.0 + 10 / 1024)
    reception.add(b"x" * 1024 * 100, 111.0)  # 100 KiB: silence is due first
    assert reception.deadline(30, 1024) == 141.0


def test_the_wait_allowed_and_why_a_client_is_cut_off():
    limits = ClientLimits(timeout=30, min_rate=1000)
    assert limits.allowed_wait(waited=0, received=0) == 30
    assert limits.allowed_wait(waited=29, received=0) == 1
    assert limits.allowed_wait(waited=60, received=100_000) == 30  # 100 s of credit
    assert limits.allowed_wait(waited=130, received=100_000) == 0
    assert "CLIENT_TIMEOUT" in limits.why(30, 0, silent=True)
    assert "MIN_UPLOAD_RATE" in limits.why(40, 50, silent=False) and "1 bytes/s" in limits.why(40, 50, False)


class Endless(io.RawIOBase):
    """A body that never ends, counting what is read of it."""

    def __init__(self) -> None:
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        self.taken += size
        return b"\x00" * size


def test_a_refused_body_is_drained_only_a_little():
    body = Endless()
    drain(body, max_bytes=1024**3)
    assert DRAIN_BYTES <= body.taken <= DRAIN_BYTES + 64 * 1024


class Failing(io.RawIOBase):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("stream", "status", "slug"),
    [
        (io.BytesIO(b"id,text\n1,a\n"), 400, "truncated-body"),  # 12 of the 100 bytes announced
        (Failing(TimeoutError("Nothing arrived for 30 s (CLIENT_TIMEOUT); cut off.")), 408, "client-timeout"),
        (Failing(ConnectionResetError(104, "Connection reset by peer")), 400, "truncated-body"),
        (Failing(ValueError("Invalid chunk size")), 400, "truncated-body"),
    ],
)
def test_a_body_that_cannot_be_read_to_its_end_is_refused(stream, status, slug):
    from webapp.problems import Problem

    with pytest.raises(Problem) as info:
        list(read_body(stream, max_bytes=10_000, expected=100))
    assert (info.value.status, info.value.slug) == (status, slug)
    drain(stream, 10_000)  # and draining it does not raise
