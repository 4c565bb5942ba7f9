"""Reading batches: get one, list them, page through a batch's results and set-aside rows, export.

Every function takes a psycopg connection (the caller's unit of work: a
pooled connection in the web app, the runner's own in a runner) and reads
rows typed with ``class_row``. Errors a client can cause are raised as
:mod:`core.errors` exceptions; the web app turns them into problem+json.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import fields

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from core.batches.model import Batch
from core.batches.rows import EXPORT_COLUMNS, Result, RowError
from core.errors import Conflict, NotFound
from core.queries import q

log = logging.getLogger(__name__)

_PUBLIC_ID_LENGTH = len("batch-") + 32
#: Every public id (the schema's CHECK says the same).
PUBLIC_ID_PATTERN = re.compile(r"batch-[0-9a-f]{32}")
#: Where a list of batches starts: before every (created_at, public_id).
NEWEST = ("infinity", "")


#: The columns a Batch is read from, named: a column the code does not know yet (a migration
#: applied before the new code is deployed) changes nothing, where ``*`` would break every read.
_BATCH_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(Batch))


def batch_statement(name: str) -> sql.Composed:
    """A named statement that reads batches, with ``{columns}`` filled in from :class:`Batch`."""
    return sql.SQL(q(name)).format(columns=_BATCH_COLUMNS)


def not_found(public_id: str) -> NotFound:
    return NotFound("Batch not found", f"There is no batch {public_id!r}.", "batch-not-found")


def get(conn: psycopg.Connection, public_id: str) -> Batch:
    """The batch with this public id; NotFound if there is none."""
    # Ids have a fixed shape: anything else cannot exist, so skip the query.
    if len(public_id) != _PUBLIC_ID_LENGTH or not public_id.startswith("batch-"):
        raise not_found(public_id)
    with conn.cursor(row_factory=class_row(Batch)) as cur:
        batch = cur.execute(batch_statement("batches_get"), {"public_id": public_id}).fetchone()
    if batch is None:
        raise not_found(public_id)
    return batch


def list_batches(
    conn: psycopg.Connection,
    *,
    status: str | None,
    client: str | None = None,
    metadata: dict[str, str] | None = None,
    before: tuple[str, str] = NEWEST,
    limit: int,
) -> list[Batch]:
    """Batches newest first, optionally of one status, one client and carrying the labels ``metadata``,
    starting after the (created_at, public_id) ``before``. Which batches the connection may see at all is
    row-level security's business: a client's transaction sees its own."""
    with conn.cursor(row_factory=class_row(Batch)) as cur:
        params = {
            "status": status,
            "client": client,
            "metadata": Jsonb(metadata or {}),
            "before_created": before[0],
            "before_public_id": before[1],
            "limit": limit,
        }
        return cur.execute(batch_statement("batches_list"), params).fetchall()


def require_results(batch: Batch, what: str = "Results are", meanwhile: str = "") -> None:
    """Conflict unless the batch finished with results to read; ``what`` names what waits for that,
    ``meanwhile`` what the client can read until then."""
    if not batch.has_results:
        scorable = batch.total_count - batch.invalid_count
        raise Conflict(
            "Batch not completed",
            f"{what} available once the batch is completed; it is {batch.status} "
            f"({batch.processed_count} of {scorable} rows scored).{meanwhile}",
            "batch-not-completed",
            status_of_batch=batch.status,
        )


def results(
    conn: psycopg.Connection,
    batch: Batch,
    *,
    sentiment: str | None,
    after: int = 0,
    before: int | None = None,
    limit: int,
) -> list[Result]:
    """Results in file order after row ``after``, or (with ``before``) the ``limit`` rows just before it,
    read backwards. Either way one index range (the results' primary key, or with ``sentiment``
    batch_result_keys_sentiment_idx)."""
    name = "batch_results_page"
    if sentiment:  # the caller has made sure the batch's sort keys are written (core.batches.sort_keys)
        name = "batch_result_keys_page"
    params = {"batch_id": batch.id, "limit": limit, "sentiment": sentiment}
    if before is None:
        params["after_row"] = after
    else:
        name, params["before_row"] = f"{name}_before", before
    with conn.cursor(row_factory=class_row(Result)) as cur:
        return cur.execute(q(name), params).fetchall()


def row_errors(conn: psycopg.Connection, batch: Batch, *, after: int = 0, limit: int) -> list[RowError]:
    """The rows the upload set aside, after error number ``after``."""
    with conn.cursor(row_factory=class_row(RowError)) as cur:
        params = {"batch_id": batch.id, "after_row": after, "limit": limit}
        return cur.execute(q("batch_row_errors_page"), params).fetchall()


def export_csv(conn: psycopg.Connection, batch: Batch) -> Iterator[bytes]:
    """Every result as CSV (with a header), straight from PostgreSQL's COPY, one block per row; the
    batch's kept columns after the standard ones, in file order. Their names can be longer than an
    identifier, so with them the header is written here rather than by COPY."""
    cell = sql.SQL(q("batch_results_export_csv_field"))
    kept = sql.SQL("").join(
        sql.SQL(", ") + cell.format(k=sql.Literal(k)) for k in range(1, len(batch.field_names) + 1)
    )
    statement = sql.SQL(q("batch_results_export_csv")).format(
        batch_id=sql.Literal(batch.id), fields=kept, header=sql.SQL("false" if batch.field_names else "true")
    )
    if batch.field_names:
        yield _csv_header([*EXPORT_COLUMNS, *(_defused(name) for name in batch.field_names)])
    with conn.cursor() as cur, cur.copy(statement) as copy:
        yield from copy


def _defused(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, with a leading quote (as the export's SQL does)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _csv_header(names: list[str]) -> bytes:
    """The header line as PostgreSQL's CSV COPY writes one: quoted only where needed, LF-ended."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(names)
    return out.getvalue().encode()


def export_results(conn: psycopg.Connection, batch: Batch, fetch_rows: int) -> Iterator[Result]:
    """Every result in file order, through a server-side cursor ``fetch_rows`` at a time."""
    with conn.cursor(name="export_results", row_factory=class_row(Result)) as cur:
        cur.itersize = fetch_rows
        cur.execute(q("batch_results_export_rows"), {"batch_id": batch.id})
        yield from cur
