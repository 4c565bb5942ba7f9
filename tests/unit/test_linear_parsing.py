"""The upload parser on hostile shapes: long lines, huge fields, unbounded encodings.

Linear time is measured by `make bench`; here the tests check what makes it
linear: a line or field past the limit is refused while the body is still being
read (nothing after it is consumed), line cutting is exact however the text
arrives, and every accepted encoding decodes with a bounded state.
"""

from __future__ import annotations

import codecs
import csv
import io
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.problems import Problem
from webapp.upload.csv_reader import MAX_FIELD_CHARS, UploadOptions, _lines, csv_rows
from webapp.upload.decoding import accepted_encodings, check_encoding

PIECE = 64 * 1024


class Counted:
    """Pieces of a body, counting the bytes the parser has taken."""

    def __init__(self, body: bytes, size: int = PIECE) -> None:
        self.body, self.size, self.taken = body, size, 0

    def __iter__(self):
        for start in range(0, len(self.body), self.size):
            piece = self.body[start : start + self.size]
            self.taken += len(piece)
            yield piece


DEFAULTS = UploadOptions()


def refusal(body: bytes, options: UploadOptions = DEFAULTS, size: int = PIECE) -> tuple[Problem, int]:
    pieces = Counted(body, size)
    with pytest.raises(Problem) as info:
        for _ in csv_rows(pieces, options):
            pass
    return info.value, pieces.taken


LIMIT = 100_000
SHAPES = {
    # id,text then one record that never ends a line
    "no newline": lambda n: b"id,text\n1," + b"a" * n,
    # one quoted field that never closes, without newlines
    "quoted, no newline": lambda n: b'id,text\n1,"' + b"a" * n,
    # one quoted field that never closes, with a newline every 80 bytes
    "quoted, with newlines": lambda n: b'id,text\n1,"' + (b"a" * 79 + b"\n") * (n // 80),
    # good rows first: the line named is where the long record starts
    "after good rows": lambda n: b"id,text\n1,ok\n2,fine\n3," + b"b" * n,
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [7, 4096, PIECE])
def test_a_record_past_the_limit_is_refused_before_the_rest_is_read(shape, size):
    body = SHAPES[shape](20 * LIMIT)
    # csv's own field limit is process-wide, so the test scales the line limit only
    # and relies on the line limit for the shapes without newlines.
    options = UploadOptions(max_line_chars=LIMIT)
    if shape == "quoted, with newlines":
        body = SHAPES[shape](MAX_FIELD_CHARS + 20 * PIECE)
        options = UploadOptions()
    problem, taken = refusal(body, options, size)
    assert (problem.status, problem.slug) == (400, "invalid-csv")
    assert problem.detail.startswith("Line 4:" if shape == "after good rows" else "Line 2:")
    limit = options.max_line_chars
    # Read on by at most a piece (and a line of 80) past the limit, never to the end.
    assert taken <= limit + 2 * size + 200 < len(body)


def test_a_line_at_the_limit_is_a_row():
    body = b"id,text\n1," + b"a" * (LIMIT - 2) + b"\n"
    rows = list(csv_rows(Counted(body, 1000), UploadOptions(max_line_chars=LIMIT, max_text_chars=LIMIT)))
    assert [(r.line, len(r.text), r.problem) for r in rows] == [(2, LIMIT - 2, None)]


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=8),
    ends=st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=8, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=1200), max_size=12),
    limit=st.integers(min_value=1, max_value=130),
    near=st.lists(st.tuples(st.integers(min_value=0, max_value=7), st.integers(-1, 2)), max_size=3),
)
def test_lines_under_the_limit_pass_and_lines_over_it_by_a_piece_are_refused(
    lengths, ends, cuts, limit, near
):
    written = ["x" * n + end for n, end in zip(lengths, ends, strict=False)]
    text = "".join(written)
    # Some cuts where a line reaches the limit, give or take a character or two.
    starts = [len("".join(written[:index])) for index in range(len(written))]
    cuts = cuts + [starts[index % len(starts)] + limit + delta for index, delta in near]
    bounds = sorted({0, len(text), *(c for c in cuts if 0 < c < len(text))})
    arrived = [text[a:b] for a, b in pairwise(bounds)]
    longest_piece = max((len(p) for p in arrived), default=0)
    if max(lengths) <= limit:
        assert list(_lines(arrived, limit)) == io.StringIO(text, newline="").readlines()
    elif max(lengths) > limit + longest_piece:
        with pytest.raises(csv.Error, match="line is longer"):
            list(_lines(arrived, limit))
    else:  # over by less than a piece: refused exactly when a piece ends inside it past the limit
        try:
            lines = list(_lines(arrived, limit))
        except csv.Error as error:
            assert "line is longer" in str(error)
            assert ends_past_the_limit(text, bounds, limit)
        else:
            assert not ends_past_the_limit(text, bounds, limit)
            assert lines == io.StringIO(text, newline="").readlines()


def ends_past_the_limit(text: str, bounds: list[int], limit: int) -> bool:
    """Whether a piece of ``text`` (cut at ``bounds``) ends inside a line, more than ``limit``
    characters into it: all of the line the parser has then seen and not yet seen end. A piece
    ending just after a CR counts too: that CR may be the start of a CRLF."""
    start = 0
    for line in io.StringIO(text, newline="").readlines():
        end = start + len(line.rstrip("\r\n"))  # where the line's end (CR, LF or CRLF) starts
        reach = end + line[len(line.rstrip("\r\n")) :].startswith("\r")
        if any(start < cut <= reach and min(cut, end) - start > limit for cut in bounds):
            return True
        start += len(line)
    return False


@pytest.mark.parametrize("name", ["utf-7", "idna", "punycode", "unicode_escape", "raw_unicode_escape"])
def test_encodings_with_unbounded_decoders_are_refused_naming_the_accepted_ones(name):
    with pytest.raises(Problem) as info:
        check_encoding(name)
    problem = info.value
    assert (problem.status, problem.slug) == (400, "unsupported-encoding")
    assert "utf-8" in problem.detail and "cp1252" in problem.detail and "shift_jis" in problem.detail
    assert problem.extra["accepted_encodings"] == list(accepted_encodings())


def test_the_usual_encodings_are_accepted():
    for name in ("utf-8", "UTF8", "latin-1", "cp1252", "utf-16", "utf-16-le", "shift_jis", "gb18030", "big5"):
        assert check_encoding(name) in accepted_encodings()


SAMPLE = "id,text\n1,Grüße, 東京 and “quotes” ok\n2,😀 ελληνικά кириллица\n" * 3


@pytest.mark.parametrize("name", accepted_encodings())
def test_every_accepted_encoding_decodes_byte_by_byte_with_a_bounded_state(name):
    text = SAMPLE.encode(name, errors="replace").decode(name)  # what the codec can represent
    data = text.encode(name)
    decoder = codecs.getincrementaldecoder(name)()
    out = []
    for index in range(len(data)):
        out.append(decoder.decode(data[index : index + 1]))
        assert len(decoder.getstate()[0]) <= 8
    out.append(decoder.decode(b"", final=True))
    assert "".join(out) == text


def test_a_cjk_decoder_overflow_is_a_400_not_a_crash():
    # iso2022 escape sequences that never complete: the decoder's pending bytes overflow.
    data = b"id,text\n1," + b"\x1b$" * 10 + b"\n"
    problem, _ = refusal(data, UploadOptions(encoding=check_encoding("iso2022_jp")), size=1)
    assert problem.status == 400
