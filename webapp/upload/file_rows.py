"""An upload's file to rows: a CSV, a JSON Lines file, or an ``.xlsx`` workbook.

The format is what the file says it is (:func:`declared_format`): a form part named ``*.xlsx`` or
sent as the OOXML spreadsheet media type is a workbook, which must be a zip archive
(``PK\\x03\\x04``); one named ``*.jsonl`` or ``*.ndjson`` (``.gz`` after either too), or sent as
``application/jsonl`` or ``application/x-ndjson``, is JSON Lines. Every other file is read as CSV,
where a zip archive, an old ``.xls`` and other binary files are refused by their first bytes
(:mod:`webapp.upload.text_lines`). The reader is chosen when :func:`core.batches.ingest.create`
first asks for the rows, so the body is read inside the upload's transaction whatever the format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.batches.ingest import StagedRow
from webapp.pagination import bad_parameter
from webapp.upload.csv_reader import CsvRows, UploadOptions, csv_rows
from webapp.upload.json_lines import JsonLinesRows
from webapp.upload.workbook import WorkbookRows, invalid_workbook

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: JSON Lines' media types: the JSON Lines site's, and NDJSON's (the type of results.ndjson).
JSONL_MEDIA_TYPES = ("application/jsonl", "application/x-ndjson")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
ZIP_MAGIC = b"PK\x03\x04"


def declared_format(filename: str | None, media_type: str) -> str:
    """ "xlsx", "jsonl" or "csv": what the file is by its name or its media type."""
    name = (filename or "").lower()
    if media_type == XLSX_MEDIA_TYPE or name.endswith(".xlsx"):
        return "xlsx"
    if media_type in JSONL_MEDIA_TYPES or name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return "csv"


class UploadRows:
    """The rows of one uploaded file, CSV, JSON Lines or workbook, as
    :func:`core.batches.ingest.create` reads them: :meth:`copy_blocks` first (the compiled CSV
    parser's), else by iterating."""

    def __init__(
        self,
        pieces: Iterable[bytes],
        options: UploadOptions,
        parser: str,
        *,
        declared: str,
        sheet: str | None,
        max_bytes: int,
    ) -> None:
        self._pieces, self._options, self._parser = pieces, options, parser
        self._declared, self._sheet, self._max_bytes = declared, sheet, max_bytes
        self._rows: CsvRows | JsonLinesRows | WorkbookRows | None = None

    def _chosen(self) -> CsvRows | JsonLinesRows | WorkbookRows:
        if self._rows is None:
            if self._declared == "xlsx":
                # A zip is read from its end: its first bytes are checked before it is spooled.
                pieces = iter(self._pieces)
                head = b""
                for piece in pieces:
                    head += piece
                    if len(head) >= len(ZIP_MAGIC):
                        break
                if not head.startswith(ZIP_MAGIC):
                    raise invalid_workbook("it is named or sent as .xlsx but is not a zip archive")
                self._rows = WorkbookRows(_chained(head, pieces), self._options, self._sheet, self._max_bytes)
            else:
                if self._sheet is not None:
                    raise bad_parameter(
                        "sheet applies to .xlsx workbooks only (a file part named *.xlsx, or sent as "
                        f"{XLSX_MEDIA_TYPE}); this file is read as "
                        f"{'JSON Lines' if self._declared == 'jsonl' else 'CSV'}."
                    )
            if self._declared == "jsonl":
                self._rows = JsonLinesRows(self._pieces, self._options)
            elif self._declared == "csv":
                # Nothing read yet: the CSV reader's COPY blocks start with the body (a binary file
                # is refused there by its first bytes, a zip among them).
                self._rows = csv_rows(self._pieces, self._options, self._parser)
        return self._rows

    def copy_blocks(self, batch_id: int) -> Iterator[bytes] | None:
        rows = self._chosen()
        return rows.copy_blocks(batch_id) if isinstance(rows, CsvRows | JsonLinesRows) else None

    @property
    def counts(self) -> tuple[int, int] | None:
        """(rows to score, rows set aside) once the COPY blocks (the compiled CSV parser's, or a JSON
        Lines file's) are exhausted."""
        return self._rows.counts if isinstance(self._rows, CsvRows | JsonLinesRows) else None

    def __iter__(self) -> Iterator[StagedRow]:
        return iter(self._chosen())

    @property
    def field_names(self) -> list[str]:
        """The file's kept columns: a CSV's or a workbook's once its header is read, a JSON Lines
        file's once it is read to its end."""
        return self._rows.field_names if self._rows is not None else []

    @property
    def widen_through(self) -> int:
        """How many of the first valid rows have fewer fields than :attr:`field_names` names (a JSON
        Lines file's key first seen after them); 0 for the other formats."""
        return self._rows.widen_through if isinstance(self._rows, JsonLinesRows) else 0


def _chained(head: bytes, pieces: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from pieces
