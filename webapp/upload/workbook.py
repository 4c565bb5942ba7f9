"""An uploaded ``.xlsx`` workbook read as one sheet of rows, by the CSV's header and record rules.

A zip archive is read from its end (the central directory), so the file is spooled to an anonymous
temporary file first (in ``TMPDIR``, else ``/tmp``; unlinked from the start, so the kernel frees it
when it is closed, whatever happens). The bytes reaching here are already capped by
MAX_UPLOAD_BYTES (:mod:`webapp.upload.request_body`, :mod:`webapp.upload.compression`); the spool
counts them again, so no path can make it grow past that. A spool that finds its disk full is a
507 ``storage-full`` (:func:`webapp.problems.storage_full`), nothing stored. Before openpyxl opens it,
the archive's directory is checked: at most :data:`MAX_ENTRIES` entries, and their declared
inflated sizes summed at most MAX_UPLOAD_BYTES (413, as for gzip). zipfile never inflates an entry
past its declared size (a lying entry fails its CRC check instead), so that sum bounds what
reading inflates. openpyxl's read-only mode then streams the sheet's XML row by row; only the
workbook's shared strings table is held whole.

The sheet is the first worksheet, or the one ``sheet=NAME`` names. Its first non-blank row is the
header, with the ``id`` and ``text`` columns found as in a CSV
(:func:`webapp.upload.csv_records.header_columns`), and its other named columns are kept with the
rows under the CSV's caps (:func:`~webapp.upload.csv_records.kept_columns`); each later row is
checked by :func:`~webapp.upload.csv_records.checked_row`, with the sheet's row number as its line.
Cells become text as a CSV export writes them (:func:`cell_text`): whole numbers without ``.0``,
other numbers to 15 significant digits, TRUE/FALSE, ISO 8601 dates and times.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time
from typing import IO, Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from core.batches.ingest import StagedRow
from core.disk_full import is_disk_full
from webapp.problems import Problem, storage_full
from webapp.upload.csv_reader import (
    PROBLEMS_LISTED,
    UploadOptions,
    _check_counts,
    _strict_refusal,
    _too_many_rows,
)
from webapp.upload.csv_records import (
    MAX_KEPT_CHARS,
    checked_row,
    header_columns,
    kept_columns,
    kept_too_long,
)
from webapp.upload.request_body import bad_request, too_large

#: How many entries the archive may hold (a workbook has a dozen or so, plus a few per sheet).
MAX_ENTRIES = 1_000
#: Excel's last row: openpyxl fills gaps in row numbers with blank rows, so a row numbered past
#: this would otherwise make it yield blank rows for as long as the number says.
MAX_SHEET_ROWS = 1_048_576
#: What openpyxl raises, one way or another, on a damaged archive or sheet.
_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    InvalidFileException,
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    SyntaxError,  # xml.etree's ParseError
    EOFError,
)


class WorkbookRows:
    """Every data row of the workbook's sheet, valid or set aside, in sheet order; read when iterated.
    :attr:`field_names` are the header's kept columns once it is read."""

    def __init__(
        self, pieces: Iterable[bytes], options: UploadOptions, sheet: str | None, max_bytes: int
    ) -> None:
        self._pieces, self._options, self._sheet, self._max_bytes = pieces, options, sheet, max_bytes
        #: The kept columns' names, in sheet order, once the header is read (the batch's field_names).
        self.field_names: list[str] = []

    def __iter__(self) -> Iterator[StagedRow]:
        with tempfile.TemporaryFile(prefix="upload-", suffix=".xlsx") as spool:
            spool_pieces(self._pieces, spool, self._max_bytes)
            spool.seek(0)
            check_archive(spool, self._max_bytes)
            spool.seek(0)
            try:
                workbook = load_workbook(spool, read_only=True, data_only=True, keep_links=False)
            except _DAMAGE as exc:
                raise invalid_workbook(
                    f"it cannot be opened ({type(exc).__name__}: {str(exc)[:200]})"
                ) from exc
            try:
                yield from self._sheet_rows(_worksheet(workbook, self._sheet))
            finally:
                workbook.close()

    def _sheet_rows(self, worksheet: Any) -> Iterator[StagedRow]:
        options = self._options
        records = _records(worksheet)
        header = next((record for _, record in records if record), None)
        if header is None:
            raise bad_request(
                "empty-file",
                f"The sheet {worksheet.title!r} is empty: expected a header row naming 'id' and 'text'.",
            )
        id_index, text_index = header_columns(header, options.text_column, options.id_column)
        kept = kept_columns(header, id_index, text_index)
        self.field_names = [header[index] for index in kept]
        width = len(header)
        rows = valid = 0
        problems: list[str] = []
        for number, record in records:
            if not record:  # a blank row
                continue
            rows += 1
            if rows > options.max_rows:
                raise _too_many_rows(options.max_rows)
            if len(record) < width:  # empty cells at the end of a row are not written
                record += [""] * (width - len(record))
            if len(record) == width:  # a longer row is set aside (wrong_field_count), as in a CSV
                for index in kept:
                    if len(record[index]) > MAX_KEPT_CHARS:
                        raise kept_too_long(number, header[index], len(record[index]))
            row = checked_row(
                number,
                record,
                width,
                id_index,
                text_index,
                options.max_text_chars,
                options.max_id_chars,
                kept,
            )
            if row.problem is None:
                valid += 1
            else:
                if options.strict:
                    raise _strict_refusal(number, row.detail)
                if len(problems) < PROBLEMS_LISTED:
                    problems.append(f"row {number}: {row.detail}")
            yield row
        _check_counts(rows, valid, problems)


def spool_pieces(pieces: Iterable[bytes], spool: IO[bytes], max_bytes: int) -> None:
    """Write the upload to the spool: at most ``max_bytes`` (413 past them), 507 on a full disk."""
    written = 0
    try:
        for piece in pieces:
            written += len(piece)
            if written > max_bytes:
                raise too_large(max_bytes)
            spool.write(piece)
        spool.flush()  # a buffered write's ENOSPC surfaces here, not when the file is closed
    except OSError as exc:
        if is_disk_full(exc):
            raise storage_full(exc) from exc
        raise


def check_archive(spool: IO[bytes], max_bytes: int) -> None:
    """Refuse an archive that is not a zip, holds more than MAX_ENTRIES entries, or whose entries
    declare more than ``max_bytes`` inflated, before anything in it is inflated."""
    try:
        with zipfile.ZipFile(spool) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise invalid_workbook(f"it is not a readable zip archive ({exc})") from exc
    if len(entries) > MAX_ENTRIES:
        raise invalid_workbook(
            f"its zip archive holds {len(entries):,} entries; the limit is {MAX_ENTRIES:,}"
        )
    inflated = sum(entry.file_size for entry in entries)
    if inflated > max_bytes:
        raise Problem(
            413,
            "Upload too large",
            f"The workbook's zip archive inflates to {inflated:,} bytes, more than the limit of "
            f"{max_bytes:,} bytes (MAX_UPLOAD_BYTES applies to the decompressed data too); refused "
            "before inflating anything, nothing was stored.",
            "upload-too-large",
        )


def invalid_workbook(reason: str) -> Problem:
    return bad_request(
        "invalid-xlsx", f"The file is not a valid .xlsx workbook: {reason}; nothing was stored."
    )


def _worksheet(workbook: Any, sheet: str | None) -> Any:
    """The sheet asked for, or the first worksheet; 400 naming the sheets for an unknown name."""
    sheets = {worksheet.title: worksheet for worksheet in workbook.worksheets}
    if not sheets:
        raise invalid_workbook("it holds no worksheet")
    if sheet is None:
        return next(iter(sheets.values()))
    if sheet not in sheets:
        names = ", ".join(repr(name) for name in list(sheets)[:50])
        raise bad_request("unknown-sheet", f"The workbook has no sheet named {sheet!r}; its sheets: {names}.")
    return sheets[sheet]


def _records(worksheet: Any) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text without trailing empty ones) for each row of the sheet."""
    worksheet.reset_dimensions()  # the declared size may be wrong: read the rows that are there
    try:
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
            if number > MAX_SHEET_ROWS:
                raise invalid_workbook(f"its sheet has rows past row {MAX_SHEET_ROWS:,}, Excel's last")
            record = [cell_text(value) for value in values]
            while record and not record[-1]:
                record.pop()
            yield number, record
    except _DAMAGE as exc:
        raise invalid_workbook(
            f"its sheet {worksheet.title!r} cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def cell_text(value: object) -> str:
    """A cell's value as a CSV export writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # Excel holds 15 significant digits, and shows and exports no more: 0.1 + 0.2 is 0.3.
        return str(int(value)) if value.is_integer() else format(value, ".15g")
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)
