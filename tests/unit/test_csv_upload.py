"""Streaming CSV parsing and multipart handling, without a database."""

from __future__ import annotations

import io
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.problems import Problem
from webapp.upload.csv_reader import CsvRow, UploadOptions, _lines, check_encoding, csv_rows
from webapp.upload.request_body import READ_SIZE, open_multipart, read_body

OPTIONS = UploadOptions()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse(data: bytes, size: int = 3, options: UploadOptions = OPTIONS) -> list[CsvRow]:
    return list(csv_rows(pieces(data, size), options))


def problem_of(data: bytes, options: UploadOptions = OPTIONS, size: int = 5) -> Problem:
    with pytest.raises(Problem) as info:
        parse(data, size, options)
    return info.value


@pytest.mark.parametrize("size", [1, 2, 7, 64 * 1024])
def test_rows_survive_any_split_of_the_bytes(size):
    data = '\ufeffid,text\r\n1,"a, ""b""\r\nc"\r\n2,é😀\r3,x\n'.encode()
    assert parse(data, size) == [CsvRow(2, "1", 'a, "b"\r\nc'), CsvRow(4, "2", "é😀"), CsvRow(5, "3", "x")]


def test_line_numbers_count_physical_lines():
    rows = parse(b'id,text\n1,"x\ny\nz"\n\n2,w\n')
    assert [(r.line, r.client_id) for r in rows] == [(2, "1"), (6, "2")]


@given(
    text=st.text(alphabet=st.sampled_from('ab,"\r\n\x0b\x0c\x1c\x85\u2028\u2029 '), max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_lines_are_cut_only_at_cr_and_lf_however_the_text_arrives(text, cuts):
    # The fast path (str.splitlines) must cut exactly where a newline='' reader does.
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    arrived = [text[a:b] for a, b in pairwise(bounds)]
    assert list(_lines(arrived)) == io.StringIO(text, newline="").readlines()


def test_row_problems_are_set_aside_with_their_line():
    data = b"id,text\n1,good\n2,a,b\n3,  \n4,a\x00b\n5," + b"x" * 30 + b"\n6,fine\n"
    rows = parse(data, options=UploadOptions(max_text_chars=20))
    assert [(r.line, r.client_id, r.problem) for r in rows] == [
        (2, "1", None),
        (3, "2", "wrong_field_count"),
        (4, "3", "empty_text"),
        (5, "4", "nul_character"),
        (6, "5", "text_too_long"),
        (7, "6", None),
    ]
    assert rows[1].detail == "expected 2 fields as in the header, found 3"


def test_an_id_past_the_limit_is_set_aside_and_only_its_start_is_kept():
    long_id = "i" * 5_000
    data = f"id,text\n{long_id},fine\nshort,fine\n{'j' * 50},also fine\n".encode()
    rows = parse(data, options=UploadOptions(max_id_chars=50))
    assert [(r.line, r.problem) for r in rows] == [(2, "id_too_long"), (3, None), (4, None)]
    assert (
        rows[0].client_id == "i" * 1_000 and rows[0].detail == "the id has 5,000 characters; the limit is 50"
    )


def test_strict_mode_rejects_at_the_first_row_problem():
    problem = problem_of(b"id,text\n1,good\n2,a,b\n", UploadOptions(strict=True))
    assert problem.status == 400 and problem.detail.startswith("Line 3:")


def test_every_row_invalid_lists_the_first_problems():
    problem = problem_of(b"id,text\n1,\n2,a,b\n")
    assert problem.slug == "no-valid-rows"
    assert "line 2: the text is empty" in problem.detail and "line 3" in problem.detail


@pytest.mark.parametrize(
    ("data", "slug", "needle"),
    [
        (b"", "empty-file", "empty"),
        (b"id,text\n", "no-data-rows", "no data rows"),
        (b"hello,world\n", "missing-text-column", "Line 1"),
        (b"id,text,Text\n1,a,b\n", "duplicate-column", "'text'"),
        (b"id,text\n1,ok\n2,caf\xe9\n", "not-utf8", "Line 3"),
        (b'id,text\n1,ok\n2,"never closed\nmore\n', "invalid-csv", "Line 3"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "binary-file", "PNG"),
        (b"PK\x03\x04" + b"\x00" * 100, "binary-file", "ZIP"),
        (b"\x1f\x8b\x08" + b"\x00" * 100, "binary-file", "gzip"),
        (b"id,text\n" + b"\x00\x01" * 200, "binary-file", "NUL"),
        ("id,text\n1,a\n".encode("utf-16"), "not-utf8", "UTF-16"),
    ],
)
def test_whole_file_problems(data, slug, needle):
    problem = problem_of(data)
    assert (problem.status, problem.slug) == (400, slug)
    assert needle in problem.detail


def test_undecodable_byte_position_is_exact():
    data = b"id,text\n1,ok\n2,ok\n3,bad \xff here\n"
    offset = data.index(b"\xff")
    for size in (1, 4, 1000):
        problem = problem_of(data, size=size)
        assert f"at byte {offset} of the file" in problem.detail and problem.detail.startswith("Line 4:")


def test_other_encodings_when_asked():
    data = "id,text\n1,café crème – “good”\n".encode("cp1252")
    rows = parse(data, options=UploadOptions(encoding=check_encoding("cp1252")))
    assert rows[0].text == "café crème – “good”"
    assert check_encoding("LATIN-1") == "iso8859-1"
    for name in ("nope", "base64", "rot13"):
        with pytest.raises(Problem):
            check_encoding(name)


def test_too_many_rows_is_413():
    problem = problem_of(b"id,text\n" + b"1,a\n" * 11, UploadOptions(max_rows=10))
    assert (problem.status, problem.slug) == (413, "too-many-rows")


def test_read_body_stops_past_the_limit():
    stream = io.BytesIO(b"x" * (3 * READ_SIZE))
    with pytest.raises(Problem) as info:
        for _ in read_body(stream, max_bytes=READ_SIZE + 1):
            pass
    assert info.value.status == 413
    assert stream.tell() < 3 * READ_SIZE  # the rest was never read


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, body in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("size", [*range(1, 40), 4096])
def test_multipart_file_part_is_streamed(size):
    content = b'id,text\r\n1,"a\r\n\r\nb"\r\n\r\n'
    body = _multipart([("strict", None, b"on"), ("file", "a.csv", content)])
    upload = open_multipart(pieces(body, size), "multipart/form-data; boundary=XyZ")
    assert upload.filename == "a.csv" and upload.fields == {"strict": "on"}
    assert b"".join(upload.data) == content


def test_multipart_without_file_field():
    with pytest.raises(Problem) as info:
        open_multipart([_multipart([("note", None, b"hi")])], "multipart/form-data; boundary=XyZ")
    assert info.value.slug == "missing-file"


def test_multipart_with_two_files():
    body = _multipart([("file", "a.csv", b"id,text\n1,a\n"), ("file", "b.csv", b"x")])
    upload = open_multipart([body], "multipart/form-data; boundary=XyZ")
    with pytest.raises(Problem) as info:
        b"".join(upload.data)
    assert info.value.slug == "several-files"


def test_the_parser_is_a_setting_checked_at_start(monkeypatch):
    import pytest

    from core.settings import Settings
    from webapp.upload import csv_reader

    assert Settings.from_env({"UPLOAD_CSV_PARSER": "python"}).upload_csv_parser == "python"
    with pytest.raises(ValueError, match="UPLOAD_CSV_PARSER"):
        Settings.from_env({"UPLOAD_CSV_PARSER": "rust"})
    assert csv_reader.parser_for("python") == "python" and csv_reader.parser_for("") == csv_reader.PARSER
    monkeypatch.setattr(csv_reader, "_fastcsv", None)  # as where the extension is not built
    with pytest.raises(ValueError, match="not built"):
        csv_reader.parser_for("c")
