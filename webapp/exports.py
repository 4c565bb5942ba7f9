"""Whole-batch downloads: ``results.csv`` and ``results.ndjson``, streamed in constant memory.

CSV is PostgreSQL's own ``COPY ... TO STDOUT`` passed through block by block
(cells a spreadsheet would run as a formula get a leading ``'``); NDJSON reads
a server-side cursor, fewer rows per fetch when texts may be long (FETCH_CHARS).
Either way the answer starts at once and goes out in writes of at most
SEND_BYTES, gzip-compressed write by write when the client accepts it
(webapp.upload.compression.deflated). At most MAX_EXPORTS stream at once per
worker (webapp.server.admission); a finished batch may be read from the replica
(webapp.replica); both run under BULK_STATEMENT_TIMEOUT, since they last as long
as the client takes to read. Columns and limits for clients: docs/api.md (Downloads).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, request

from core import batches
from core.batches import Batch
from core.setting_values import parse_bool
from webapp.db import connection, settings
from webapp.feed.views import follow_ndjson
from webapp.pagination import bad_parameter
from webapp.replica import ExportSource, export_source
from webapp.server import admission
from webapp.upload.compression import deflated
from webapp.upload.csv_records import MAX_KEPT_CHARS

bp = Blueprint("exports", __name__)

FETCH_ROWS = 2_000
#: Characters of text one NDJSON fetch may hold, counting every row at MAX_TEXT_CHARS (and its kept
#: columns at MAX_KEPT_CHARS).
FETCH_CHARS = 8_000_000
SEND_BYTES = 64 * 1024


def _fetch_rows(max_row_chars: int) -> int:
    """Rows per NDJSON fetch: FETCH_ROWS, or fewer if that many rows could pass FETCH_CHARS."""
    return max(1, min(FETCH_ROWS, FETCH_CHARS // max_row_chars))


def _attachment(public_id: str, extension: str, mimetype: str, body: Iterator[bytes]) -> Response:
    """The download, gzip-compressed write by write when the client accepts gzip."""
    compressed = request.accept_encodings["gzip"] > 0
    response = Response(deflated(body) if compressed else body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{public_id}-results.{extension}"'
    if compressed:
        response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response


def _gathered(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The same bytes in writes of SEND_BYTES (the last one shorter): COPY hands over one row
    per message, and the server would otherwise spend its time on tiny sends instead of on
    rows; and however long one row is, no write is longer."""
    buffer = bytearray()
    for block in blocks:
        buffer += block
        while len(buffer) >= SEND_BYTES:
            yield bytes(buffer[:SEND_BYTES])
            del buffer[:SEND_BYTES]
    if buffer:
        yield bytes(buffer)


# The generators run while the response streams, outside the request's app
# context: they are handed where to read from instead of looking it up.
def _csv_blocks(source: ExportSource, batch: Batch) -> Iterator[bytes]:
    with source.connection(batch) as conn:
        yield from _gathered(batches.export_csv(conn, batch))


def _ndjson_lines(source: ExportSource, batch: Batch, fetch_rows: int) -> Iterator[bytes]:
    with source.connection(batch) as conn:
        lines = (
            json.dumps(r.to_export_json(), ensure_ascii=False).encode() + b"\n"
            for r in batches.export_results(conn, batch, fetch_rows)
        )
        yield from _gathered(lines)


def _finished_batch(public_id: str) -> Batch:
    with connection() as conn:
        batch = batches.get(conn, public_id)
    batches.require_results(batch)
    return batch


def _capped(make: Callable[[], Response]) -> Response:
    """The response ``make`` builds, holding one of MAX_EXPORTS slots until it has been sent
    (503 with Retry-After at once when none is free)."""
    release = admission.take("exports")
    try:
        response = make()
    except BaseException:
        release()
        raise
    response.call_on_close(release)
    return response


@bp.get("/batch/<public_id>/results.csv")
def results_csv(public_id: str) -> Response:
    batch = _finished_batch(public_id)
    blocks = _csv_blocks(export_source(), batch)
    return _capped(lambda: _attachment(public_id, "csv", "text/csv", blocks))


@bp.get("/batch/<public_id>/results.ndjson")
def results_ndjson(public_id: str) -> Response:
    """The download; with ``follow=true``, the rows as they are scored, until the batch ends."""
    try:
        follow = parse_bool(request.args.get("follow", "false"))
    except ValueError:
        raise bad_parameter(f"follow must be true or false, got {request.args['follow'][:20]!r}.") from None
    if follow:
        return follow_ndjson(public_id)
    batch = _finished_batch(public_id)
    # A row's kept columns count at their limit too.
    row_chars = settings().max_text_chars + len(batch.field_names) * MAX_KEPT_CHARS
    lines = _ndjson_lines(export_source(), batch, _fetch_rows(row_chars))
    return _capped(lambda: _attachment(public_id, "ndjson", "application/x-ndjson", lines))
