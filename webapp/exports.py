"""Whole-batch downloads: ``results.csv`` and ``results.ndjson``, streamed.

CSV is PostgreSQL's own ``COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)``
passed through block by block (RFC 4180 quoting, so texts with quotes,
commas and newlines round-trip); cells a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, TAB or CR) get a leading ``'``, as
OWASP advises. NDJSON reads the rows through a server-side cursor, 2,000 at a
time. Either way the response starts at once and memory stays flat,
whatever the batch's size. Both run under BULK_STATEMENT_TIMEOUT, not the
requests' shorter STATEMENT_TIMEOUT: the COPY lasts as long as the client
takes to read it. Columns: id, text, sentiment, score, compound, pos, neu,
neg, error (empty unless the row's scoring failed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Response

from core import batches
from core.batches import Batch
from webapp.db import WebPool, get_pool

bp = Blueprint("exports", __name__)

FETCH_ROWS = 2_000
SEND_BYTES = 64 * 1024


def _attachment(public_id: str, extension: str, mimetype: str, body: Iterator[bytes]) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{public_id}-results.{extension}"'
    return response


def _gathered(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The same bytes in writes of about SEND_BYTES: COPY hands over one row per message, and
    the server would otherwise spend its time on tiny sends instead of on rows."""
    buffer = bytearray()
    for block in blocks:
        buffer += block
        if len(buffer) >= SEND_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


# The generators run while the response streams, outside the request's app
# context: they are handed the pool instead of looking it up.
def _csv_blocks(pool: WebPool, batch: Batch) -> Iterator[bytes]:
    with pool.bulk_connection() as conn:
        yield from _gathered(batches.export_csv(conn, batch))


def _ndjson_lines(pool: WebPool, batch: Batch) -> Iterator[bytes]:
    with pool.bulk_connection() as conn:
        lines = (
            json.dumps(r.to_export_json(), ensure_ascii=False).encode() + b"\n"
            for r in batches.export_results(conn, batch, FETCH_ROWS)
        )
        yield from _gathered(lines)


def _finished_batch(public_id: str) -> Batch:
    with get_pool().connection() as conn:
        batch = batches.get(conn, public_id)
    batches.require_results(batch)
    return batch


@bp.get("/batch/<public_id>/results.csv")
def results_csv(public_id: str) -> Response:
    batch = _finished_batch(public_id)
    return _attachment(public_id, "csv", "text/csv", _csv_blocks(get_pool(), batch))


@bp.get("/batch/<public_id>/results.ndjson")
def results_ndjson(public_id: str) -> Response:
    batch = _finished_batch(public_id)
    return _attachment(public_id, "ndjson", "application/x-ndjson", _ndjson_lines(get_pool(), batch))
