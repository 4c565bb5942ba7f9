"""batch_inputs' binary COPY tuples, as the compiled parser writes them, read back into rows: for
callers that iterate over an upload's rows rather than copy them, and for the tests."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from core.batches.ingest import StagedRow as CsvRow

# A COPY tuple's fixed part: 7 fields, batch_id (int8), row_number and line_number (int4).
_TUPLE_HEAD = struct.Struct(">hiqiiii")
_LENGTH = struct.Struct(">i")
# A one-dimensional array's header: dimensions, has NULLs, element type, length, lower bound.
_ARRAY_HEAD = struct.Struct(">iiiii")


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
