"""Write an upload into PostgreSQL in one transaction.

The batch row, the staged rows (streamed with ``COPY``) and the chunks are
created together; the NOTIFY that wakes the runners is delivered at commit.
If the CSV turns out to be bad half-way, the exception aborts the COPY and
the transaction, so a rejected upload leaves no trace.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from jobrunner.queries import q
from webapp.csv_upload import CsvRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreatedBatch:
    public_id: str
    total_count: int


def new_public_id() -> str:
    """``batch-`` and 128 random bits in hex."""
    return f"batch-{secrets.token_hex(16)}"


def ingest_upload(
    pool: ConnectionPool, rows: Iterable[CsvRow], *, chunk_size: int, filename: str | None
) -> CreatedBatch:
    """Create a batch from ``rows``; every row is staged or none is."""
    public_id = new_public_id()
    with pool.connection() as conn, conn.transaction():
        batch_id = conn.execute(
            q("batches_insert"),
            {"public_id": public_id, "chunk_size": chunk_size, "source_filename": filename},
        ).fetchone()[0]
        total = 0
        with conn.cursor() as cur, cur.copy(q("batch_rows_copy")) as copy:
            for total, row in enumerate(rows, start=1):
                copy.write_row((batch_id, total, row.client_id, row.text))
        params = {"batch_id": batch_id, "total_count": total, "chunk_size": chunk_size}
        conn.execute(q("chunks_insert_for_batch"), params)
        conn.execute(q("batches_set_total"), params)
        conn.execute(q("batches_notify_ready"), {"public_id": public_id})
    log.info("batch %s: %d rows staged in chunks of %d", public_id, total, chunk_size)
    return CreatedBatch(public_id, total)
