"""Whole-batch downloads: ``results.csv`` and ``results.ndjson``, streamed.

CSV is PostgreSQL's own ``COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)``
passed through block by block (RFC 4180 quoting, so texts with quotes,
commas and newlines round-trip); cells a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, TAB or CR) get a leading ``'``, as
OWASP advises. NDJSON reads the rows through a server-side cursor, 2,000 at a
time. Either way the response starts at once and memory stays flat,
whatever the batch's size. Columns: id, text, sentiment, score, compound,
pos, neu, neg, error (empty unless the row's scoring failed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Response
from psycopg import sql
from psycopg_pool import ConnectionPool

from core.queries import q
from webapp.db import get_pool
from webapp.lookup import load_batch, require_results

bp = Blueprint("exports", __name__)

FETCH_ROWS = 2_000
SEND_BYTES = 64 * 1024
COLUMNS = ("id", "text", "sentiment", "score", "compound", "pos", "neu", "neg", "error")


def _attachment(public_id: str, extension: str, mimetype: str, body: Iterator[bytes]) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{public_id}-results.{extension}"'
    return response


def _csv_blocks(pool: ConnectionPool, batch_id: int) -> Iterator[bytes]:
    # COPY hands over one row per message; gather them into ~64 KiB writes,
    # or the server spends its time on tiny sends instead of on rows.
    statement = sql.SQL(q("batch_results_export_csv")).format(batch_id=sql.Literal(batch_id))
    with pool.connection() as conn, conn.cursor() as cur, cur.copy(statement) as copy:
        buffer = bytearray()
        for block in copy:
            buffer += block
            if len(buffer) >= SEND_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


def _ndjson_lines(pool: ConnectionPool, batch_id: int) -> Iterator[bytes]:
    with pool.connection() as conn, conn.cursor(name="export_ndjson") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(q("batch_results_export_rows"), {"batch_id": batch_id})
        buffer: list[str] = []
        for row in cur:
            buffer.append(json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False))
            if len(buffer) >= FETCH_ROWS:
                yield ("\n".join(buffer) + "\n").encode()
                buffer.clear()
        if buffer:
            yield ("\n".join(buffer) + "\n").encode()


@bp.get("/batch/<public_id>/results.csv")
def results_csv(public_id: str) -> Response:
    batch = load_batch(public_id)
    require_results(batch)
    return _attachment(public_id, "csv", "text/csv", _csv_blocks(get_pool(), batch["id"]))


@bp.get("/batch/<public_id>/results.ndjson")
def results_ndjson(public_id: str) -> Response:
    batch = load_batch(public_id)
    require_results(batch)
    return _attachment(public_id, "ndjson", "application/x-ndjson", _ndjson_lines(get_pool(), batch["id"]))
