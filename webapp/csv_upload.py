"""Read an uploaded CSV as a stream of rows, never holding the whole file.

The request body arrives in 64 KiB pieces. For ``multipart/form-data`` the
pieces go through werkzeug's incremental (sans-IO) multipart decoder and only
the ``file`` part's bytes are passed on; for ``text/csv`` the body is the
file. The bytes are decoded as UTF-8 (a BOM is dropped) by a TextIOWrapper
and split into records by the ``csv`` module, which handles RFC 4180 quoting
(commas, doubled quotes and newlines inside quoted fields) and LF or CRLF.

The first record is the header: it must name a ``text`` column; ``id`` is
optional (without it a row's id is its line number in the file). Names are
trimmed and compared case-insensitively; other columns are ignored. Blank
lines are skipped. Every problem is raised as :class:`~webapp.problems.Problem`
naming the line, so the upload transaction rolls back and nothing is kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, File, MultipartDecoder, NeedData

from webapp.problems import Problem

READ_SIZE = 64 * 1024
# Upper bound for one field; anything longer is not a text we should score.
MAX_FIELD_CHARS = 1_000_000
CSV_MEDIA_TYPES = {"text/csv", "application/csv", "text/plain"}

csv.field_size_limit(MAX_FIELD_CHARS)


@dataclass(frozen=True)
class CsvRow:
    line: int  # line of the file where the record starts, 1 = header
    client_id: str
    text: str


def bad_upload(detail: str, slug: str = "invalid-csv", status: int = 400) -> Problem:
    return Problem(status, "Invalid upload", detail, slug)


def read_body(stream: io.RawIOBase | io.BufferedIOBase, max_bytes: int) -> Iterator[bytes]:
    """The request body in pieces, stopping with 413 once it passes ``max_bytes``."""
    seen = 0
    while True:
        piece = stream.read(READ_SIZE)
        if not piece:
            return
        seen += len(piece)
        if seen > max_bytes:
            raise Problem(
                413,
                "Upload too large",
                f"The upload is larger than the limit of {max_bytes} bytes.",
                "upload-too-large",
            )
        yield piece


def multipart_file(pieces: Iterable[bytes], content_type: str) -> tuple[str | None, Iterator[bytes]]:
    """Find the ``file`` part of a multipart body; its filename and its bytes.

    Parts before it (small form fields) are skipped; the body after it is
    left unread, so only the file is ever streamed.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise bad_upload("The multipart/form-data body has no boundary.", "invalid-multipart")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=READ_SIZE * 4)
    source = _steady_pieces(pieces)

    def events() -> Iterator[object]:
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                decoder.receive_data(next(source, None))
                continue
            yield event
            if isinstance(event, Epilogue):
                return

    stream = events()
    try:
        for event in stream:
            if isinstance(event, File) and event.name == "file":
                return event.filename, _part_data(stream)
    except ValueError as exc:
        raise bad_upload(f"The multipart/form-data body is malformed: {exc}", "invalid-multipart") from exc
    raise bad_upload(
        "The form has no field named 'file'. Send the CSV as -F 'file=@data.csv'.", "missing-file"
    )


def _steady_pieces(pieces: Iterable[bytes], minimum: int = 256) -> Iterator[bytes]:
    """The same bytes, re-cut into pieces of at least ``minimum`` bytes (but
    the last) that never end with a lone CR.

    werkzeug's decoder can emit a stray CR at the end of a part when the
    CR LF before the boundary is split across tiny pieces; pieces that are
    not tiny and hold back a trailing CR avoid it. Request bodies are read
    in 64 KiB pieces anyway, so this costs nothing in practice.
    """
    pending = b""
    for piece in pieces:
        pending += piece
        if len(pending) < minimum:
            continue
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        yield pending[:cut]
        pending = pending[cut:]
    if pending:
        yield pending


def _part_data(stream: Iterator[object]) -> Iterator[bytes]:
    try:
        for event in stream:
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    return
    except ValueError as exc:
        raise bad_upload(f"The multipart/form-data body is malformed: {exc}", "invalid-multipart") from exc


class _PiecesReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte pieces."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._rest = piece
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _column_index(header: list[str]) -> tuple[int | None, int]:
    names = [name.strip().lower() for name in header]
    if "text" not in names:
        raise bad_upload(
            f"Line 1: the header must name a 'text' column; found {', '.join(map(repr, header))}.",
            "missing-text-column",
        )
    return (names.index("id") if "id" in names else None), names.index("text")


def csv_rows(pieces: Iterable[bytes]) -> Iterator[CsvRow]:
    """Parse the CSV bytes into rows, validating as they stream past."""
    text_stream = io.TextIOWrapper(
        io.BufferedReader(_PiecesReader(pieces), READ_SIZE), encoding="utf-8-sig", newline=""
    )
    reader = csv.reader(text_stream, strict=True)
    records = _records(reader)
    header = next(records, None)
    if header is None:
        raise bad_upload("The file is empty: expected a header row naming 'id' and 'text'.", "empty-file")
    id_index, text_index = _column_index(header[1])
    width = len(header[1])
    any_rows = False
    for line, record in records:
        if len(record) != width:
            raise bad_upload(
                f"Line {line}: expected {width} fields as in the header, found {len(record)}.",
                "wrong-field-count",
            )
        text = record[text_index]
        if not text.strip():
            raise bad_upload(f"Line {line}: the text is empty.", "empty-text")
        client_id = record[id_index] if id_index is not None else str(line)
        if "\x00" in text or "\x00" in client_id:
            # PostgreSQL text cannot hold NUL.
            raise bad_upload(f"Line {line}: the row contains a NUL character.", "nul-character")
        any_rows = True
        yield CsvRow(line, client_id, text)
    if not any_rows:
        raise bad_upload("The file has a header but no data rows.", "no-data-rows")


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on, translating parse errors."""
    line = 1
    try:
        for record in reader:
            start = line
            line = reader.line_num + 1  # type: ignore[attr-defined]
            if record:
                yield start, record
    except UnicodeDecodeError as exc:
        raise bad_upload(
            f"Line {line}: the file is not valid UTF-8 ({exc.reason} at byte {exc.start} of the "
            "decoded block).",
            "not-utf8",
        ) from exc
    except csv.Error as exc:
        raise bad_upload(f"Line {line}: {exc}.", "invalid-csv") from exc
