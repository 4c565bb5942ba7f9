"""The bytes of an upload up to its physical lines: binary files refused by their first bytes, and
lines cut in time linear in the input however it is shaped.

:mod:`webapp.upload.csv_reader` parses what this yields; a line longer than the limit is a
``csv.Error`` there, reported with the line where its record starts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from itertools import chain

from webapp.upload.request_body import bad_request

#: Every field of a record is under this, so no line is longer: csv's own field limit.
MAX_FIELD_CHARS = 10_000_000

_MAGIC = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is read when named *.xlsx or sent as one)"),
    # A gzip file reaches here inflated (webapp.upload.compression); gzip again means compressed twice.
    (b"\x1f\x8b", "a gzip archive inside a gzip archive (compressed twice)"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Word document (export it as CSV)"),
]
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
SNIFF_BYTES = 8192


def line_too_long(max_line_chars: int) -> str:
    return f"a line is longer than {max_line_chars:,} characters (no line ends?)"


def sniffed(pieces: Iterator[bytes], encoding: str, what: str = "CSV") -> Iterator[bytes]:
    """Refuse binary files by their first 8 KiB; then pass every byte on. ``what`` names the text
    the file should have been, in the refusal."""
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= SNIFF_BYTES:
            break
    sample = head[:SNIFF_BYTES]
    for magic, kind in _MAGIC:
        if sample.startswith(magic):
            raise bad_request("binary-file", f"This is {kind}, not a {what} text file.")
    if encoding == "utf-8":
        if sample.startswith(_UTF16_BOMS):
            raise bad_request(
                "not-utf8",
                f"The file is UTF-16 (Excel's 'Unicode text'); save it as {what} UTF-8, or upload with "
                "?encoding=utf-16.",
            )
        # A stray NUL in a row is a row problem; many of them mean a binary file.
        nuls = sample.count(0)
        if nuls > 64 or nuls * 10 > len(sample):
            raise bad_request("binary-file", f"The file holds many NUL bytes: it is binary, not {what} text.")
    if head:
        yield head
    yield from pieces


def physical_lines(texts: Iterable[str], max_line_chars: int = MAX_FIELD_CHARS) -> Iterator[str]:
    """Physical lines with their ends (CR, LF or CRLF), as csv wants them."""
    return chain.from_iterable(line_lists(texts, max_line_chars))


def line_lists(texts: Iterable[str], max_line_chars: int) -> Iterator[list[str]]:
    """The lines of each decoded piece, as a list (csv reads them from a C-level chain).

    Linear in the input whatever its shape: the unfinished line at the end of a
    piece is kept as a list of its parts, joined once when its end arrives, so a
    body without a newline is not copied again for every piece. A line longer
    than ``max_line_chars`` is refused as soon as it gets there (a csv.Error,
    reported with the line where its record starts); nothing after it is read.
    """
    parts: list[str] = []  # the unfinished line, in pieces
    pending = 0  # its length
    carry = ""  # a CR at the end of a piece: maybe the first half of a CRLF
    for text in texts:
        if carry:
            text, carry = carry + text, ""
        if text.endswith("\r"):
            text, carry = text[:-1], "\r"
        if not text:
            continue
        lines = text.splitlines(keepends=True)
        # splitlines also cuts at a few other characters (form feed, U+2028, ...),
        # which in a CSV file are text, not line ends: then cut the slow way.
        if any(line[-1] not in "\r\n" for line in lines[:-1]):
            lines = io.StringIO(text, newline="").readlines()
        last = lines[-1]
        unfinished = last[-1] not in "\r\n"
        if unfinished:
            lines.pop()
        if parts and lines:
            parts.append(lines[0])
            lines[0] = "".join(parts)
            parts, pending = [], 0
        if unfinished:
            parts.append(last)
            pending += len(last)
            if pending > max_line_chars:
                raise csv.Error(line_too_long(max_line_chars))
        if lines:
            yield lines
    if parts or carry:
        yield ["".join(parts) + carry]
