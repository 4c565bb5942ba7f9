"""Parse an uploaded CSV as a stream of rows, never holding the whole file.

Bytes (from :mod:`webapp.upload.request_body`, inflated by :mod:`webapp.upload.compression` if
gzip) are sniffed for binary formats, decoded incrementally (UTF-8 with or without BOM, or the
encoding the client names), cut into physical lines (CR, LF or CRLF) and parsed by ``csv`` with
RFC 4180 quoting. Whole-file problems raise :class:`~webapp.problems.Problem` (400/413) naming
the line, and the upload's transaction rolls back, leaving nothing; row problems (wrong number of
fields, empty text, text too long, a NUL) yield the row with ``problem`` set, to be set aside and
counted, unless the upload is strict: then the first one is a 400. Every rule is in the manual's
API reference (docs/api.md, "What counts as a bad file").

Two parsers follow these rules. UTF-8 files (nearly all) go to the compiled one,
:mod:`webapp.upload._fastcsv`, which writes batch_inputs' binary COPY tuples without a Python
object per row (:meth:`CsvRows.copy_blocks`); this module's pure-Python parser reads the other
encodings, and every file where the extension is not built. tests/unit/test_fastcsv.py proves
them equal on arbitrary bytes; the setting ``UPLOAD_CSV_PARSER=python`` runs uploads on the fallback.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from core.batches.ingest import StagedRow
from webapp.problems import Problem
from webapp.upload.copy_tuples import rows_of_copy
from webapp.upload.csv_records import (
    KEPT_ID_CHARS,
    MAX_KEPT_CHARS,
    checked_row,
    header_columns,
    kept_columns,
    kept_too_long,
)
from webapp.upload.decoding import check_encoding, decoded, undecodable  # noqa: F401 (check_encoding: part of this API)
from webapp.upload.request_body import bad_request
from webapp.upload.row_tally import PROBLEMS_LISTED, check_counts, new_row, strict_refusal, too_many_rows
from webapp.upload.text_lines import MAX_FIELD_CHARS, line_too_long, physical_lines, sniffed

try:
    from webapp.upload import _fastcsv
except ImportError:  # not built (installed without a C compiler): the pure-Python parser reads every file
    _fastcsv = None

# csv's per-field limit is ours per physical line (MAX_FIELD_CHARS). A field or
# line longer than this (a runaway quote, usually, or a body without newlines)
# fails the whole file as soon as it passes the limit; texts over
# MAX_TEXT_CHARS but under this are set aside.
csv.field_size_limit(MAX_FIELD_CHARS)


@dataclass(frozen=True)
class UploadOptions:
    encoding: str = "utf-8"
    strict: bool = False
    max_rows: int = 10_000_000
    max_text_chars: int = 20_000
    max_id_chars: int = 1_000
    #: Longest physical line; csv's own field limit is process-wide (MAX_FIELD_CHARS).
    max_line_chars: int = MAX_FIELD_CHARS
    #: The columns of the text and of the id; None: 'text' and 'id' (webapp.upload.csv_records).
    text_column: str | None = None
    id_column: str | None = None

    def header_columns(self, header: list[str]) -> tuple[int | None, int]:
        """The id and text columns' indexes in ``header``, by these options."""
        return header_columns(header, self.text_column, self.id_column)


_lines = physical_lines  # the tests' name for the line cutter

#: One data row of the file, valid or set aside: exactly what a batch stages.
CsvRow = StagedRow

#: The parser of UTF-8 files unless UPLOAD_CSV_PARSER says: "c" (webapp/upload/_fastcsv.c) where
#: it is built, else "python" (this module's).
PARSER = "c" if _fastcsv is not None else "python"


def parser_for(setting: str) -> str:
    """The parser UPLOAD_CSV_PARSER names ("" for the default); ValueError for "c" where it is not
    built (a web process checks this at start rather than on every upload)."""
    if setting == "c" and _fastcsv is None:
        raise ValueError("UPLOAD_CSV_PARSER=c: webapp/upload/_fastcsv.c is not built (pip install -e .)")
    return setting or PARSER


#: What the compiled parser decodes (itself: UTF-8, a leading BOM dropped).
COMPILED_ENCODINGS = ("utf-8", "utf-8-sig")


def csv_rows(pieces: Iterable[bytes], options: UploadOptions, parser: str | None = None) -> CsvRows:
    """Every data row of the file, valid or set aside, in file order; read when iterated.

    ``parser``: "c" or "python", else :data:`PARSER`."""
    return CsvRows(pieces, options, parser or PARSER)


class CsvRows:
    """The rows of one uploaded file, read once, as CsvRow tuples or as COPY blocks.

    :func:`core.batches.ingest.create` asks for :meth:`copy_blocks` first: with the compiled
    parser, they are batch_inputs' rows as binary COPY tuples, numbered, written in C; the
    counts are in :attr:`counts` once the blocks are exhausted. Otherwise (None) it iterates.
    """

    def __init__(self, pieces: Iterable[bytes], options: UploadOptions, parser: str) -> None:
        if parser not in ("c", "python") or (parser == "c" and _fastcsv is None):
            raise ValueError(f"parser {parser!r}: 'python', or 'c' where webapp/upload/_fastcsv.c is built")
        self._pieces, self._options = pieces, options
        self.compiled = parser == "c" and options.encoding in COMPILED_ENCODINGS
        #: (rows to score, rows set aside), once copy_blocks is exhausted.
        self.counts: tuple[int, int] | None = None
        #: The kept columns' names, in file order, once the header is read (the batch's field_names).
        self.field_names: list[str] = []

    def _on_header(self, header: list[str]) -> tuple[int | None, int, tuple[int, ...]]:
        """The header's id, text and kept columns; their names are remembered for the batch."""
        id_index, text_index = self._options.header_columns(header)
        kept = kept_columns(header, id_index, text_index)
        self.field_names = [header[index] for index in kept]
        return id_index, text_index, kept

    def __iter__(self) -> Iterator[CsvRow]:
        if not self.compiled:
            return _python_rows(self._pieces, self._options, self._on_header)
        return rows_of_copy(self._compiled(0))

    def copy_blocks(self, batch_id: int) -> Iterator[bytes] | None:
        """batch_inputs' binary COPY tuples for ``batch_id`` (core.batches.ingest.INPUT_TYPES,
        without signature or trailer), in blocks; None without the compiled parser."""
        return self._compiled(batch_id) if self.compiled else None

    def _compiled(self, batch_id: int) -> Iterator[bytes]:
        options = self._options
        reader = _fastcsv.Reader(
            batch_id,
            self._on_header,
            field_limit=csv.field_size_limit(),
            max_line_chars=options.max_line_chars,
            max_text_chars=options.max_text_chars,
            max_id_chars=options.max_id_chars,
            kept_id_chars=KEPT_ID_CHARS,
            max_rows=options.max_rows,
            strict=options.strict,
            problems_listed=PROBLEMS_LISTED,
            max_kept_chars=MAX_KEPT_CHARS,
        )
        try:
            for piece in sniffed(iter(self._pieces), options.encoding):
                if block := reader.feed(piece):
                    yield block
            if block := reader.finish():
                yield block
        except _fastcsv.Refusal as refusal:
            raise _refused(refusal.args, options, self.field_names) from None
        if not reader.header_seen:
            raise _empty_file()
        rows, valid, invalid = reader.counts
        check_counts(rows, valid, reader.problems)
        self.counts = (valid, invalid)


def _refused(args: tuple, options: UploadOptions, field_names: list[str]) -> Problem:
    """The Problem for a refusal of the compiled parser: the same as the Python parser's."""
    kind, line, *more = args
    if kind == "undecodable":
        position, byte = more
        return undecodable(line, position, f"{byte:02x}", options.encoding)
    if kind == "csv":
        return _invalid_csv(more[0], line)
    if kind == "line-too-long":
        return _invalid_csv(line_too_long(options.max_line_chars), line)
    if kind == "invalid-row":
        return strict_refusal(line, more[0])
    if kind == "kept-too-long":
        position, chars = more
        return kept_too_long(line, field_names[position], chars)
    if kind == "too-many-rows":
        return too_many_rows(options.max_rows)
    raise AssertionError(f"unknown refusal {args!r}")


#: What the header's reader answers: the id's, the text's and the kept columns' indexes.
OnHeader = Callable[[list[str]], tuple[int | None, int, tuple[int, ...]]]


def _python_rows(pieces: Iterable[bytes], options: UploadOptions, on_header: OnHeader) -> Iterator[CsvRow]:
    """csv_rows, parsed in Python: decoding, lines and csv.reader in the standard library."""
    pieces = sniffed(iter(pieces), options.encoding)
    lines = physical_lines(decoded(pieces, options.encoding), options.max_line_chars)
    reader = csv.reader(lines, strict=True)
    try:
        first = next((record for record in reader if record), None)
    except csv.Error as exc:
        raise _invalid_csv(str(exc), 1) from exc
    if first is None:
        raise _empty_file()
    id_index, text_index, kept = on_header(first)
    width = len(first)
    rows = valid = 0
    max_rows, max_text_chars, max_id_chars = options.max_rows, options.max_text_chars, options.max_id_chars
    problems: list[str] = []
    line = reader.line_num + 1  # where the next record starts
    # This loop runs once per row of files with millions of them, so the common case is written
    # out inline: no helper calls, rows built as bare tuples; the count is row_tally's, by hand.
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record:  # a blank line
                continue
            rows += 1
            if len(record) == width:
                values, clean = None, True
                if kept:
                    values = tuple(record[index] for index in kept)
                    for position, value in enumerate(values):
                        if len(value) > MAX_KEPT_CHARS:
                            if rows > max_rows:  # the compiled parser counts the row first
                                raise too_many_rows(max_rows)
                            raise kept_too_long(start, first[kept[position]], len(value))
                    clean = not any("\x00" in value for value in values)
                text = record[text_index]
                client_id = record[id_index] if id_index is not None else str(start)
                if (
                    text
                    and len(text) <= max_text_chars
                    and not text.isspace()
                    and "\x00" not in text
                    and "\x00" not in client_id
                    and clean
                    and len(client_id) <= max_id_chars
                ):
                    valid += 1
                    if rows > max_rows:
                        raise too_many_rows(max_rows)
                    yield new_row(CsvRow, (start, client_id, text, None, None, values))
                    continue
            if rows > max_rows:
                raise too_many_rows(max_rows)
            row = checked_row(start, record, width, id_index, text_index, max_text_chars, max_id_chars, kept)
            if row.problem is None:
                valid += 1
            else:
                if options.strict:
                    raise strict_refusal(start, row.detail)
                if len(problems) < PROBLEMS_LISTED:
                    problems.append(f"line {start}: {row.detail}")
            yield row
    except csv.Error as exc:
        raise _invalid_csv(str(exc), line) from exc
    check_counts(rows, valid, problems)


def _empty_file() -> Problem:
    return bad_request("empty-file", "The file is empty: expected a header row naming 'id' and 'text'.")


def _invalid_csv(message: str, line: int) -> Problem:
    """A parse error (csv.Error's message) as a 400 naming the line where the broken record starts."""
    if "unexpected end of data" in message:
        message = "a quoted field starting here is never closed"
    elif "field larger than field limit" in message:
        message = f"a field is longer than {MAX_FIELD_CHARS:,} characters (an unclosed quote?)"
    return bad_request("invalid-csv", f"Line {line}: {message}.")
