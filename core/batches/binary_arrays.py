"""Arrays of numbers sent to PostgreSQL in its binary array format, built by numpy in one go.

A finish sends a round's scores as float8[] and its row numbers as int4[]:
psycopg would adapt a list element by element in Python; here numpy writes
every element (its length and its big-endian bytes) at once, and a dumper
hands the bytes over as they are. Register the dumpers on the connection or
cursor that sends them (:func:`register_arrays`).
"""

from __future__ import annotations

import struct

import numpy as np
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

# PostgreSQL's binary array format: a header (dimensions, has-nulls flag,
# element type; then length and lower bound per dimension) and each element
# as its length and its big-endian bytes. numpy writes the elements in one go.


class _Int4Array(bytes):
    """An int4[] already in PostgreSQL's binary format."""


class _Float8Array(bytes):
    """A float8[] already in PostgreSQL's binary format."""


def _binary_array(values: np.ndarray, element_oid: int, dtype: str, size: int) -> bytes:
    if len(values) == 0:
        return struct.pack("!iiI", 0, 0, element_oid)
    body = np.empty(len(values), dtype=[("size", ">i4"), ("value", dtype)])
    body["size"] = size
    body["value"] = values
    return struct.pack("!iiIii", 1, 0, element_oid, len(values), 1) + body.tobytes()


def int4_array(values: np.ndarray) -> _Int4Array:
    return _Int4Array(_binary_array(values, 23, ">i4", 4))


def float8_array(values: np.ndarray) -> _Float8Array:
    """Failed rows' NaNs are sent as they are: the finish keeps no number of a row with an error."""
    return _Float8Array(_binary_array(values, 701, ">f8", 8))


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1007

    def dump(self, obj: bytes) -> bytes:
        return obj


class _Float8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1022

    def dump(self, obj: bytes) -> bytes:
        return obj


def register_arrays(context: AdaptContext) -> None:
    context.adapters.register_dumper(_Int4Array, _Int4ArrayDumper)
    context.adapters.register_dumper(_Float8Array, _Float8ArrayDumper)
