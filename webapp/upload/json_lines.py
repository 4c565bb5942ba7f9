"""A JSON Lines upload (``.jsonl``, ``application/x-ndjson``) read as a stream of rows.

The bytes go the CSV's way up to their lines (:mod:`webapp.upload.text_lines`: binary files refused
by their first bytes, lines cut in linear time under the same length limit;
:mod:`webapp.upload.decoding`: the same encodings and errors). Each non-blank line is one JSON
object (:mod:`webapp.upload.json_values`), and its line number in the file is the row's ``line``;
lines holding only whitespace are skipped.

The columns are the objects' keys, found as a CSV header's are: the text is the key ``text_column``
names, else ``text``, and the id the key ``id_column`` names, else ``id``, trimmed and
case-insensitive (:func:`webapp.upload.csv_records.header_columns`). Every other key is kept with the
rows, under the CSV's caps (:mod:`webapp.upload.csv_records`): the batch's ``field_names`` are every
key any line has, in the order they first appear, spelled as first written; a line without one of
them has it empty. Rows already written when a later line brings a new key are widened by
:func:`core.batches.ingest.create` before the upload commits (:attr:`JsonLinesRows.widen_through`).

Per line, the rules of a CSV row apply (:func:`~webapp.upload.csv_records.checked_row`), and more set
it aside: not JSON (``invalid_json``), JSON but not an object (``not_an_object``), no text key
(``missing_text``), a text that is not a string or an id that is an object or an array
(``wrong_type``), two keys naming one column (``duplicate_key``: ``Text`` and ``text``). A text that
is ``null`` is an empty text; an id absent or ``null`` is the line number, as in a CSV without an id
column. Whole-file refusals are the CSV's: no line at all, no line with the text's key (or the
``id_column``'s) listing the keys found, too many rows, a kept value or key over the caps.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from core.batches.ingest import StagedRow
from webapp.upload.copy_tuples import copy_of_rows
from webapp.upload.csv_reader import UploadOptions
from webapp.upload.csv_records import (
    MAX_KEPT_CHARS,
    MAX_KEPT_COLUMNS,
    MAX_KEPT_NAME_CHARS,
    checked_row,
    kept_too_long,
    listed,
    set_aside,
    too_many_kept,
)
from webapp.upload.decoding import decoded
from webapp.upload.json_values import JsonNumber, LineProblem, cell_text, kind_of, parsed_object
from webapp.upload.request_body import bad_request
from webapp.upload.row_tally import RowTally, new_row
from webapp.upload.text_lines import physical_lines, sniffed

#: Where a key goes, besides a kept column's position: the text, the id, or nowhere (a blank key is
#: not kept, as a CSV column without a name is not).
TEXT, ID, SKIPPED = -1, -2, -3
#: Exact spellings of keys remembered with their column; past this many, a key is looked up by its
#: trimmed lower-case name each time (a file can spell one key in endless ways).
SPELLINGS_KEPT = 10_000
#: JSON's whitespace: a line of only these is blank.
JSON_WHITESPACE = " \t\r\n"


class JsonLinesRows:
    """The rows of one JSON Lines file, valid or set aside, in file order; read once, when iterated.

    :attr:`field_names` grows as lines bring new keys; it is final once the rows are exhausted, and
    rows ``1..widen_through`` (valid rows, in order) then have fewer fields than it names."""

    def __init__(self, pieces: Iterable[bytes], options: UploadOptions) -> None:
        self._pieces, self._options = pieces, options
        #: The kept keys, in the order they first appear.
        self.field_names: list[str] = []
        #: How many of the first valid rows were written with fewer fields than field_names.
        self.widen_through = 0
        self._text_name = (options.text_column or "text").strip().lower()
        self._id_name = (options.id_column or "id").strip().lower()
        self._columns: dict[str, int] = {}  # trimmed lower-case name: its slot
        self._spellings: dict[str, int] = {}  # a key as written: its slot
        self._keys: list[str] = []  # every named key, as first written, for a refusal that lists them
        self._text_seen = self._id_seen = False
        self._variants = False  # whether a column has been named by two spellings of its key
        self._tally = RowTally(options.max_rows, options.strict)
        self._counts: list[int] = []

    def __iter__(self) -> Iterator[StagedRow]:
        return self._rows()

    def copy_blocks(self, batch_id: int) -> Iterator[bytes]:
        """The rows as batch_inputs' binary COPY tuples for ``batch_id``; :attr:`counts` once
        exhausted."""
        return copy_of_rows(batch_id, self._rows(), self._counts)

    @property
    def counts(self) -> tuple[int, int] | None:
        """(rows to score, rows set aside) once :meth:`copy_blocks` is exhausted."""
        return (self._counts[0], self._counts[1]) if self._counts else None

    def _rows(self) -> Iterator[StagedRow]:
        options = self._options
        pieces = sniffed(iter(self._pieces), options.encoding, "JSON Lines")
        lines = physical_lines(decoded(pieces, options.encoding), options.max_line_chars)
        number = objects = 0
        tally = self._tally
        try:
            for line in lines:
                number += 1
                if line[:1] != "{" and not line.strip(JSON_WHITESPACE):
                    continue
                tally.count()
                try:
                    found = parsed_object(line)
                    objects += 1
                    row = self._plain_row(number, found, "\\u0000" in line) or self.row(number, found)
                except LineProblem as problem:
                    row = set_aside(number, str(number), problem.reason, problem.detail)
                tally.checked("line", number, row.problem, row.detail)
                yield row
        except csv.Error as exc:  # a line past the limit (text_lines.line_lists); nothing after it is read
            raise bad_request("invalid-jsonl", f"Line {number + 1}: {exc}.") from exc
        if tally.rows == 0:
            raise bad_request(
                "empty-file", "The file is empty: expected one JSON object per line, with a 'text' key."
            )
        if objects:
            self._check_columns_found()
        tally.finish()

    def _plain_row(self, line: int, found: dict[str, Any], escaped_nul: bool) -> StagedRow | None:
        """The row of a line that passes every rule with keys seen before, as :meth:`row` would
        make it; None for any other line, which :meth:`row` then reads. Most lines of most files
        are these, and this is most of an upload's time per line, so it is written out flat."""
        if escaped_nul or self._variants:  # a NUL to set aside; keys that may name a column twice
            return None
        spellings = self._spellings
        fields = [""] * len(self.field_names)
        text = identifier = None
        for key, value in found.items():
            slot = spellings.get(key)
            if slot is None:  # a key first seen here
                return None
            if slot >= 0:
                fields[slot] = value if type(value) is str else cell_text(value)
            elif slot == TEXT:
                text = value
            elif slot == ID:
                identifier = value
        if type(text) is not str or not text or len(text) > self._options.max_text_chars or text.isspace():
            return None
        if identifier is None:
            client_id = str(line)
        elif type(identifier) is str:
            client_id = identifier
        elif isinstance(identifier, JsonNumber):
            client_id = str(identifier)
        else:
            return None
        if len(client_id) > self._options.max_id_chars:
            return None
        if fields and max(map(len, fields)) > MAX_KEPT_CHARS:
            return None
        return new_row(StagedRow, (line, client_id, text, None, None, tuple(fields) if fields else None))

    def row(self, line: int, found: dict[str, Any]) -> StagedRow:
        """The row of the object ``found`` on ``line``: to score, or set aside with its reason."""
        width = len(self.field_names)
        cells: dict[int, Any] = {}
        duplicate = None
        for key, value in found.items():
            slot = self._spellings.get(key)
            if slot is None:
                slot = self._slot(key, line)
            if slot == SKIPPED:
                continue
            if slot in cells and duplicate is None:
                first = next(
                    k for k in found if self._spellings.get(k, self._columns.get(k.strip().lower())) == slot
                )
                duplicate = f"the keys {first!r} and {key!r} name one column"
            cells[slot] = value
        if len(self.field_names) > width and self._tally.valid:
            self.widen_through = self._tally.valid  # every valid row so far is narrower
        fields = [cell_text(cells.get(index)) for index in range(len(self.field_names))]
        for index, value in enumerate(fields):
            if len(value) > MAX_KEPT_CHARS:
                raise kept_too_long(line, self.field_names[index], len(value))
        identifier = cells.get(ID)
        if identifier is None:
            client_id = None
        elif type(identifier) is str:
            client_id = identifier
        elif isinstance(identifier, JsonNumber | bool):
            client_id = cell_text(identifier)
        else:
            return set_aside(
                line, str(line), "wrong_type", f"the id is {kind_of(identifier)}, not a string or a number"
            )
        shown = str(line) if client_id is None else client_id
        if duplicate is not None:
            return set_aside(line, shown, "duplicate_key", duplicate)
        if TEXT not in cells:
            return set_aside(
                line, shown, "missing_text", f"the object has no {self._options.text_column or 'text'!r} key"
            )
        text = cells[TEXT]
        if text is None:
            return set_aside(line, shown, "empty_text", "the text is null")
        if type(text) is not str:
            return set_aside(line, shown, "wrong_type", f"the text is {kind_of(text)}, not a string")
        options = self._options
        return checked_row(
            line,
            [client_id or "", text, *fields],
            len(fields) + 2,
            None if client_id is None else 0,
            1,
            options.max_text_chars,
            options.max_id_chars,
            tuple(range(2, len(fields) + 2)),
        )

    def _slot(self, key: str, line: int) -> int:
        """The column of ``key`` (TEXT, ID, SKIPPED or a kept column's position), a new kept column
        if it names none yet; a 400 past MAX_KEPT_COLUMNS or for a name a column cannot have."""
        name = key.strip().lower()
        slot = self._columns.get(name)
        if slot is not None and slot != SKIPPED:
            self._variants = True
        if slot is None:
            if name == self._text_name:
                slot, self._text_seen = TEXT, True
            elif name == self._id_name:
                slot, self._id_seen = ID, True
            elif not name:
                slot = SKIPPED
            else:
                slot = len(self.field_names)
                if slot == MAX_KEPT_COLUMNS:
                    raise too_many_kept(line, slot + 1, "keys")
                _check_name(key, line)
                self.field_names.append(key)
            if name:
                self._keys.append(key)
            self._columns[name] = slot
        if len(self._spellings) < SPELLINGS_KEPT:
            self._spellings[key] = slot
        return slot

    def _check_columns_found(self) -> None:
        """The file has been read: refuse it if no line has the text's key, or the id's it names."""
        options = self._options
        if not self._text_seen and options.text_column is None:
            raise bad_request(
                "missing-text-column",
                f"No line has a 'text' key (the lines' keys: {listed(self._keys)}); name the key of "
                "the text with text_column.",
            )
        for column, seen, option in (
            (options.text_column, self._text_seen, "text_column"),
            (options.id_column, self._id_seen, "id_column"),
        ):
            if column is not None and not seen:
                raise bad_request(
                    "missing-column",
                    f"No line has the key {column!r} ({option}); the lines' keys are {listed(self._keys)}.",
                )


def _check_name(key: str, line: int) -> None:
    """A 400 for a key that cannot name a kept column: too long, or holding what text cannot store."""
    try:
        key.encode("utf-8")
        storable = "\x00" not in key
    except UnicodeEncodeError:  # half of a surrogate pair
        storable = False
    if len(key) > MAX_KEPT_NAME_CHARS or not storable:
        raise bad_request(
            "invalid-column-name",
            f"Line {line}: a key kept as a column must be at most {MAX_KEPT_NAME_CHARS} characters "
            f"without a NUL (found {key[:80]!r}).",
        )
