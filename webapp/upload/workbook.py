"""An uploaded ``.xlsx`` workbook read as one sheet of rows, by the CSV's header and record rules.

The file is spooled and its zip archive checked before openpyxl opens it
(:mod:`webapp.upload.workbook_archive`: sizes declared, per archive and per part, within their
caps). openpyxl's read-only mode then streams the sheet's XML row by row; only the workbook's
shared strings table is held whole.

The sheet is the first worksheet, or the one ``sheet=NAME`` names. Its first non-blank row is the
header, with the ``id`` and ``text`` columns found as in a CSV
(:func:`webapp.upload.csv_records.header_columns`), and its other named columns are kept with the
rows under the CSV's caps (:func:`~webapp.upload.csv_records.kept_columns`); a header wider than
:data:`MAX_HEADER_WIDTH` is refused. Each later row is checked by
:func:`~webapp.upload.csv_records.checked_row`, with the sheet's row number as its line, and never
costs more than the header's width + 1 values however far right its cells are (:func:`_records`).
Cells become text as a CSV export writes them (:func:`cell_text`): whole numbers without ``.0``,
other numbers to 15 significant digits, TRUE/FALSE, ISO 8601 dates and times.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._reader import WorkSheetParser

from core.batches.ingest import StagedRow
from webapp.upload.csv_reader import UploadOptions
from webapp.upload.csv_records import (
    MAX_KEPT_CHARS,
    MAX_KEPT_COLUMNS,
    checked_row,
    header_columns,
    kept_columns,
    kept_too_long,
)
from webapp.upload.request_body import bad_request
from webapp.upload.row_tally import RowTally
from webapp.upload.workbook_archive import check_archive, invalid_workbook, spool_pieces

#: Excel's last row: a sheet with a row numbered past it is not one Excel could have written.
MAX_SHEET_ROWS = 1_048_576
#: The widest header read: every kept column, the id and the text, with blank columns between.
MAX_HEADER_WIDTH = 4 * (MAX_KEPT_COLUMNS + 2)
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
        cut = [MAX_HEADER_WIDTH + 1]  # cells read per row: the header's, then the header's width + 1
        records = _records(worksheet, cut)
        number, header = next(((number, record) for number, record in records if record), (0, None))
        if header is None:
            raise bad_request(
                "empty-file",
                f"The sheet {worksheet.title!r} is empty: expected a header row naming 'id' and 'text'.",
            )
        if len(header) > MAX_HEADER_WIDTH:
            raise bad_request(
                "too-many-columns",
                f"Row {number}: the sheet's header has a cell past column {MAX_HEADER_WIDTH}; at most "
                f"{MAX_KEPT_COLUMNS} columns besides the text and the id are kept, and the header may "
                f"be at most {MAX_HEADER_WIDTH} columns wide, blank ones included.",
            )
        id_index, text_index = header_columns(header, options.text_column, options.id_column)
        kept = kept_columns(header, id_index, text_index)
        self.field_names = [header[index] for index in kept]
        width = len(header)
        cut[0] = width + 1  # a longer row is set aside whatever its length: read no more of it
        tally = RowTally(options.max_rows, options.strict)
        for number, record in records:
            if not record:  # a blank row
                continue
            tally.count()
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
            tally.checked("row", number, row.problem, row.detail)
            yield row
        tally.finish()


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


def _records(worksheet: Any, cut: list[int]) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text without trailing empty ones) for each row with cells of the sheet,
    each cut after ``cut[0]`` cells (read anew for every row: the caller sets it once it has the
    header), a value past the cut standing in the last cell.

    Each row is built from the cells its XML holds, not from openpyxl's rows, which fill every gap
    before a cell with empty values (a lone cell at column XFD would be 16,384 of them): a row
    costs what its XML holds and at most ``cut[0]`` values. One cell past the header's width is all
    a longer row's check needs to set it aside, as a longer CSV row is."""
    source = worksheet._get_source()  # the sheet's XML, read as a stream of rows
    parser = WorkSheetParser(
        source,
        worksheet._shared_strings,
        data_only=True,
        epoch=worksheet.parent.epoch,
        date_formats=worksheet.parent._date_formats,
        timedelta_formats=worksheet.parent._timedelta_formats,
    )
    last = 0
    try:
        for number, cells in parser.parse():
            if number > MAX_SHEET_ROWS:
                raise invalid_workbook(f"its sheet has rows past row {MAX_SHEET_ROWS:,}, Excel's last")
            if number <= last:  # a row numbered again is read once, as openpyxl reads it
                continue
            last, width = number, cut[0]
            record = [""] * min(max((cell["column"] for cell in cells), default=0), width)
            for cell in cells:
                text = cell_text(cell["value"])
                if text:
                    record[min(cell["column"], width) - 1] = text
            while record and not record[-1]:
                record.pop()
            yield number, record
    except _DAMAGE as exc:
        raise invalid_workbook(
            f"its sheet {worksheet.title!r} cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    finally:
        source.close()


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
