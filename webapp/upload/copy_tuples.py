"""batch_inputs' binary COPY tuples: the compiled parser's read back into rows (for callers that
iterate over an upload's rows rather than copy them, and for the tests), and rows written as them
(:func:`copy_of_rows`, for the JSON Lines reader, where psycopg's ``write_row`` would build a text[]
in Python for every row)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from core.batches.ingest import StagedRow as CsvRow

# A COPY tuple's fixed part: 7 fields, batch_id (int8), row_number and line_number (int4).
_TUPLE_HEAD = struct.Struct(">hiqiiii")
_LENGTH = struct.Struct(">i")
# A one-dimensional array's header: dimensions, has NULLs, element type, length, lower bound.
_ARRAY_HEAD = struct.Struct(">iiiii")
_NULL = _LENGTH.pack(-1)
_TEXT_OID = 25
#: About this many bytes of tuples per block handed to COPY.
BLOCK_BYTES = 64 * 1024


def copy_of_rows(batch_id: int, rows: Iterable[CsvRow], counts: list[int]) -> Iterator[bytes]:
    """``rows`` as batch_inputs' binary COPY tuples (core.batches.ingest.INPUT_TYPES, without
    signature or trailer), numbered as ingest numbers rows it writes itself: rows to score 1, 2, ...,
    rows set aside -1, -2, ... with their problem; in blocks of about BLOCK_BYTES. ``counts`` is set
    to [rows to score, rows set aside] once the rows are exhausted."""
    head, length, array_head = _TUPLE_HEAD.pack, _LENGTH.pack, _ARRAY_HEAD.pack
    valid = invalid = size = 0
    parts: list[bytes] = []
    for row in rows:
        client_id = row.client_id.encode()
        if row.problem is None:
            valid += 1
            text = row.text.encode()
            if row.fields:
                elements = [value.encode() for value in row.fields]
                array = array_head(1, 0, _TEXT_OID, len(elements), 1) + b"".join(
                    length(len(element)) + element for element in elements
                )
                values = length(len(array)) + array
            else:
                values = _NULL
            part = b"".join(
                (
                    head(7, 8, batch_id, 4, valid, 4, row.line),
                    length(len(client_id)),
                    client_id,
                    length(len(text)),
                    text,
                    _NULL,
                    values,
                )
            )
        else:
            invalid += 1
            problem = f"{row.problem}\t{row.detail}".encode()
            part = b"".join(
                (
                    head(7, 8, batch_id, 4, -invalid, 4, row.line),
                    length(len(client_id)),
                    client_id,
                    length(0),
                    length(len(problem)),
                    problem,
                    _NULL,
                )
            )
        parts.append(part)
        size += len(part)
        if size >= BLOCK_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)
    counts[:] = [valid, invalid]


def rows_of_copy(blocks: Iterable[bytes]) -> Iterator[CsvRow]:
    """The CsvRow tuples that COPY tuples hold (for callers that iterate, and for the tests)."""
    for block in blocks:
        position = 0
        while position < len(block):
            _, _, _, _, row_number, _, line = _TUPLE_HEAD.unpack_from(block, position)
            position += _TUPLE_HEAD.size
            fields = []
            for _ in range(3):
                (length,) = _LENGTH.unpack_from(block, position)
                position += 4
                if length < 0:
                    fields.append(None)
                else:
                    fields.append(block[position : position + length].decode())
                    position += length
            client_id, text, problem = fields
            (length,) = _LENGTH.unpack_from(block, position)
            position += 4
            values = None
            if length >= 0:
                values, position = _text_array(block, position), position + length
            if row_number > 0:
                yield CsvRow(line, client_id, text, fields=values)
            else:
                reason, detail = problem.split("\t", 1)
                yield CsvRow(line, client_id, text, reason, detail)


def _text_array(block: bytes, position: int) -> tuple[str, ...]:
    """The elements of a binary text[] (one dimension, no NULL) at ``position``."""
    _, _, _, count, _ = _ARRAY_HEAD.unpack_from(block, position)
    position += _ARRAY_HEAD.size
    values = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(block, position)
        values.append(block[position + 4 : position + 4 + length].decode())
        position += 4 + length
    return tuple(values)
