"""The compiled CSV parser (webapp/upload/_fastcsv.c) against the pure-Python one.

Both must give the same rows (line, id, text, problem, detail) and, for a refused file, the same
problem (status, slug, detail) on any bytes cut into any pieces, under any limits: the refusal
that comes first in one comes first in the other. The compiled parser's COPY blocks must also be
what core.batches.ingest writes row by row for the Python parser's rows.
"""

from __future__ import annotations

import csv
import os
import struct
from contextlib import contextmanager
from itertools import pairwise

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from webapp.problems import Problem
from webapp.upload import csv_reader
from webapp.upload.csv_reader import CsvRow, UploadOptions, csv_rows

if csv_reader._fastcsv is None:
    reason = "webapp/upload/_fastcsv.c is not built: `pip install -e .` builds it (gcc and Python headers)"
    if os.environ.get("UPLOAD_CSV_PARSER") == "python":
        pytest.skip(reason, allow_module_level=True)
    pytest.fail(reason, pytrace=False)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    return [data[a:b] for a, b in pairwise(bounds)]


@contextmanager
def field_limit(limit: int | None):
    """csv's field limit is process-wide; both parsers read it when they start."""
    before = csv.field_size_limit()
    if limit is not None:
        csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def outcome(pieces: list[bytes], options: UploadOptions, parser: str):
    try:
        return ("rows", list(csv_rows(pieces, options, parser)))
    except Problem as problem:
        return ("refused", problem.status, problem.slug, problem.detail)


# What core.batches.ingest.create writes per row with copy.write_row (INPUT_TYPES).
def copy_tuples(rows: list[CsvRow], batch_id: int) -> tuple[bytes, tuple[int, int]]:
    out, valid, invalid = bytearray(), 0, 0
    for row in rows:
        if row.problem is None:
            valid += 1
            number, text, problem = valid, row.text, None
        else:
            invalid += 1
            number, text, problem = -invalid, "", f"{row.problem}\t{row.detail}"
        out += struct.pack(">hiqiiii", 7, 8, batch_id, 4, number, 4, row.line)
        for value in (row.client_id, text, problem):
            if value is None:
                out += struct.pack(">i", -1)
            else:
                encoded = value.encode()
                out += struct.pack(">i", len(encoded)) + encoded
        if row.fields is None:
            out += struct.pack(">i", -1)
        else:  # a one-dimensional text[] of the kept columns' values
            elements = b"".join(struct.pack(">i", len(v.encode())) + v.encode() for v in row.fields)
            out += struct.pack(">iiiiii", 20 + len(elements), 1, 0, 25, len(row.fields), 1) + elements
    return bytes(out), (valid, invalid)


def assert_same(data: bytes, cuts: list[int], options: UploadOptions, limit: int | None = None) -> None:
    pieces = cut(data, cuts)
    with field_limit(limit):
        expected = outcome(pieces, options, "python")
        assert outcome(pieces, options, "c") == expected
        rows = csv_rows(pieces, options, "c")
        try:
            blocks = b"".join(rows.copy_blocks(2**40 + 7))
        except Problem:
            assert expected[0] == "refused"
            return
    assert expected[0] == "rows"
    assert (blocks, rows.counts) == copy_tuples(expected[1], 2**40 + 7)


# Pieces of CSV files, chosen for the rules: quotes, every line end, NUL, whitespace that
# str.isspace() knows (and some it does not), a BOM, multi-byte characters; and, rarely (a
# file with one is refused), bytes that are not UTF-8 or are cut short.
FRAGMENTS = [
    b"id",
    b"text",
    b"ID",
    b" Text ",
    b",",
    b",",
    b",",
    b'"',
    b'"',
    b'""',
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"a",
    b"ok",
    b"good text",
    b" ",
    b"\t",
    b"\x00",
    b"\x0b\x0c\x1c",
    "\u00a0".encode(),
    "\u2028\u3000\u200b".encode(),
    "\u0085".encode(),
    "é".encode(),
    "😀".encode(),
    "東京".encode(),
    b"\xef\xbb\xbf",
    b"\n1,fine\n",
    b"\r\n2,good, text\r\n",
    b'\n3,"quoted, ""text""\nover lines"\r',
    "\n4,été 😀\n".encode(),
]
BROKEN = [
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xed\xa0",
    b"\xe0\x80",
    b"\xf0\x9f",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
]
HEADERS = [
    b"id,text\n",
    b"text\r\n",
    b"text,id\r",
    b"a,text,id\n",
    b"",
    b"\n\nid,text\n",
    b'"id","te\nxt"\r\n',
]


@st.composite
def csv_like(draw: st.DrawFn) -> bytes:
    # About one file in five holds a broken byte (st.integers would draw 0 far more often).
    parts = draw(st.lists(st.sampled_from(FRAGMENTS * 40 + BROKEN), max_size=60))
    return draw(st.sampled_from(HEADERS)) + b"".join(parts)


LIMITS = st.builds(
    UploadOptions,
    strict=st.booleans(),
    max_rows=st.integers(0, 12),
    max_text_chars=st.integers(0, 12),
    max_id_chars=st.integers(0, 4),
    max_line_chars=st.integers(1, 40),
)


@given(
    data=st.one_of(csv_like(), csv_like(), csv_like(), st.binary(max_size=200)),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    options=st.one_of(st.just(UploadOptions()), LIMITS),
    limit=st.one_of(st.none(), st.integers(1, 40)),
)
@example(data=b"\xef\xbb\xbfid,text\n1,ab\xffcd\n", cuts=[], options=UploadOptions(), limit=None)
@example(data=b"id,text\n1,x\n2,a,b\n3,y\xed\xa0", cuts=[], options=UploadOptions(strict=True), limit=None)
@example(data=b'id,text\n1,"ab\r', cuts=[12], options=UploadOptions(), limit=None)
def test_both_parsers_give_the_same_rows_and_refusals(data, cuts, options, limit):
    assert_same(data, cuts, options, limit)


@given(
    text=st.text(max_size=30),
    client_id=st.text(max_size=6),
    cuts=st.lists(st.integers(0, 100), max_size=6),
    options=LIMITS,
)
def test_any_characters_in_a_quoted_field(text, client_id, cuts, options):
    # Every code point (not only the fragments above) through the text and id rules.
    quoted = '"' + text.replace('"', '""') + '"'
    data = f'id,text\n"{client_id.replace(chr(34), chr(34) * 2)}",{quoted}\n2,ok\n'
    assert_same(data.encode("utf-8", "surrogatepass"), cuts, options)


def test_whitespace_is_what_str_isspace_says():
    lines = ["id,text"] + [f'{code},"{chr(code)}"' for code in range(0x3100) if chr(code) not in '"\x00']
    assert_same("\n".join(lines).encode("utf-8", "surrogatepass"), [], UploadOptions(max_text_chars=2))


@pytest.mark.parametrize("size", [1, 3, 4096, 64 * 1024])
def test_long_lines_and_fields_at_their_limits(size):
    for body in (
        b"id,text\n1," + b"a" * 500 + b"\n2,b\n",
        b'id,text\n1,"' + b"a\n" * 300 + b'"\n',
        b"id,text\n" + b"x" * 300 + b",fine\n" + "é".encode() * 200 + b"\r",
    ):
        for options in (UploadOptions(), UploadOptions(max_line_chars=400, max_id_chars=100)):
            for limit in (None, 450, 600):
                assert_same(body, list(range(size, len(body), size)), options, limit)


def test_other_encodings_and_the_fallback_use_the_python_parser():
    data = "id,text\n1,café\n".encode("cp1252")
    rows = csv_rows([data], UploadOptions(encoding="cp1252"), "c")
    assert rows.copy_blocks(1) is None and list(rows) == [CsvRow(2, "1", "café")]
    assert csv_rows([b"id,text\n1,a\n"], UploadOptions(), "python").copy_blocks(1) is None


@pytest.mark.parametrize("parser", ["c", "python"])
@pytest.mark.parametrize("size", [1, 4, 1000])
def test_an_undecodable_byte_after_a_bom_is_named_at_its_position(parser, size):
    data = b"\xef\xbb\xbfid,text\n1,ab\xffcd\n"
    with pytest.raises(Problem) as info:
        list(csv_rows(cut(data, list(range(size, len(data), size))), UploadOptions(), parser))
    assert info.value.detail.startswith("Line 2: the file is not valid UTF-8 at byte 15 of the file")
    assert "(byte 0xff)" in info.value.detail


@pytest.mark.parametrize(
    "data",
    [
        b"id,text,product\n1,good,router\n2,bad,\n",
        b"id,product,text,,channel\n1,router,good,x,email\n2,a\x00b,fine,,chat\n3,x,y\n",
        b"id,text,product\n1,good," + b"p" * 2_001 + b"\n",
        b"id,text,product\n1,good,ok\n2,fine," + b"p" * 2_001 + b"\n",
        b"text," + b",".join(b"c%d" % n for n in range(51)) + b"\n",
        b"text,\x00name\n",
    ],
)
@pytest.mark.parametrize("strict", [False, True])
def test_kept_columns_alike_in_both_parsers(data, strict):
    assert_same(data, [7, 30], UploadOptions(strict=strict))
