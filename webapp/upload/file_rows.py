"""An upload's file to rows: a CSV, or an ``.xlsx`` workbook, told apart by its first bytes.

A workbook is a zip archive (``PK\\x03\\x04``) that says it is one: sent as the OOXML spreadsheet
media type, or in a form part named ``*.xlsx``. Every other file is read as CSV, where a zip
archive, an old ``.xls`` and other binary files are refused by their first bytes
(:mod:`webapp.upload.text_lines`). The choice is made when :func:`core.batches.ingest.create`
first asks for the rows, so the body is read inside the upload's transaction either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.batches.ingest import StagedRow
from webapp.pagination import bad_parameter
from webapp.upload.csv_reader import CsvRows, UploadOptions, csv_rows
from webapp.upload.workbook import invalid_workbook, workbook_rows

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ZIP_MAGIC = b"PK\x03\x04"


def says_workbook(filename: str | None, media_type: str) -> bool:
    """Whether the file is declared an .xlsx workbook, by its name or its media type."""
    return media_type == XLSX_MEDIA_TYPE or (filename or "").lower().endswith(".xlsx")


class UploadRows:
    """The rows of one uploaded file, CSV or workbook, as :func:`core.batches.ingest.create` reads
    them: :meth:`copy_blocks` first (the compiled CSV parser's), else by iterating."""

    def __init__(
        self,
        pieces: Iterable[bytes],
        options: UploadOptions,
        parser: str,
        *,
        declared_workbook: bool,
        sheet: str | None,
        max_bytes: int,
    ) -> None:
        self._pieces, self._options, self._parser = pieces, options, parser
        self._declared_workbook, self._sheet, self._max_bytes = declared_workbook, sheet, max_bytes
        self._rows: CsvRows | Iterator[StagedRow] | None = None

    def _chosen(self) -> CsvRows | Iterator[StagedRow]:
        if self._rows is None:
            if self._declared_workbook:
                # A zip is read from its end: its first bytes are checked before it is spooled.
                pieces = iter(self._pieces)
                head = b""
                for piece in pieces:
                    head += piece
                    if len(head) >= len(ZIP_MAGIC):
                        break
                if not head.startswith(ZIP_MAGIC):
                    raise invalid_workbook("it is named or sent as .xlsx but is not a zip archive")
                self._rows = workbook_rows(
                    _chained(head, pieces), self._options, self._sheet, self._max_bytes
                )
            else:
                if self._sheet is not None:
                    raise bad_parameter(
                        "sheet applies to .xlsx workbooks only (a file part named *.xlsx, or sent as "
                        f"{XLSX_MEDIA_TYPE}); this file is read as CSV."
                    )
                # Nothing read yet: the CSV reader's COPY blocks start with the body (a binary file
                # is refused there by its first bytes, a zip among them).
                self._rows = csv_rows(self._pieces, self._options, self._parser)
        return self._rows

    def copy_blocks(self, batch_id: int) -> Iterator[bytes] | None:
        rows = self._chosen()
        return rows.copy_blocks(batch_id) if isinstance(rows, CsvRows) else None

    @property
    def counts(self) -> tuple[int, int] | None:
        """(rows to score, rows set aside) once the compiled parser's blocks are exhausted."""
        return self._rows.counts if isinstance(self._rows, CsvRows) else None

    def __iter__(self) -> Iterator[StagedRow]:
        return iter(self._chosen())

    @property
    def field_names(self) -> list[str]:
        """The CSV's kept columns, once its header is read (a workbook keeps none)."""
        return self._rows.field_names if isinstance(self._rows, CsvRows) else []


def _chained(head: bytes, pieces: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from pieces
