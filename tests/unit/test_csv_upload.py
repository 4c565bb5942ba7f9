"""Streaming CSV parsing without a database."""

from __future__ import annotations

import io

import pytest

from webapp.csv_upload import CsvRow, csv_rows, multipart_file, read_body
from webapp.problems import Problem


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse(data: bytes, size: int = 3) -> list[CsvRow]:
    return list(csv_rows(pieces(data, size)))


@pytest.mark.parametrize("size", [1, 2, 7, 64 * 1024])
def test_rows_survive_any_split_of_the_bytes(size):
    data = '\ufeffid,text\r\n1,"a, ""b""\r\nc"\r\n2,é😀\r\n'.encode()
    assert parse(data, size) == [CsvRow(2, "1", 'a, "b"\r\nc'), CsvRow(4, "2", "é😀")]


def test_line_numbers_count_physical_lines():
    rows = parse(b'id,text\n1,"x\ny\nz"\n\n2,w\n')
    assert [(r.line, r.client_id) for r in rows] == [(2, "1"), (6, "2")]


def test_errors_name_the_line():
    with pytest.raises(Problem) as info:
        parse(b"id,text\n1,a\n2,b\n3,c,d\n")
    assert info.value.status == 400 and info.value.detail.startswith("Line 4:")


def test_read_body_stops_past_the_limit():
    stream = io.BytesIO(b"x" * 200_000)
    with pytest.raises(Problem) as info:
        for _ in read_body(stream, max_bytes=100_000):
            pass
    assert info.value.status == 413
    assert stream.tell() < 200_000  # the rest was never read


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, body in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("size", [*range(1, 40), 4096])
def test_multipart_file_part_is_streamed(size):
    content = b'id,text\r\n1,"a\r\n\r\nb"\r\n\r\n'
    body = _multipart([("note", None, b"hi\r\n"), ("file", "a.csv", content)])
    filename, data = multipart_file(pieces(body, size), "multipart/form-data; boundary=XyZ")
    assert filename == "a.csv"
    assert b"".join(data) == content


def test_multipart_without_file_field():
    body = _multipart([("note", None, b"hi")])
    with pytest.raises(Problem) as info:
        multipart_file([body], "multipart/form-data; boundary=XyZ")
    assert info.value.slug == "missing-file"
