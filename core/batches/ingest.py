"""Create a batch: an upload's rows, its batch row and its chunks, in one transaction.

Its id, and its range's partitions, come first, in a short transaction of their own
(:func:`reserve_id`).

The rows stream through one binary ``COPY`` into ``batch_inputs``, where they stay
for the batch's life: valid rows numbered 1, 2, ... with no gap (so a page in file
order is an index range), set-aside rows as ``-error_number``, moved to
``batch_row_errors`` before commit. An exception from the rows aborts the COPY and
the transaction, so a refused upload leaves no trace, and the NOTIFY that wakes the
runners is delivered only at commit. The COPY, and a big batch's ANALYZE, run as the
login role, every other statement as the caller: PostgreSQL refuses ``COPY FROM``
into a table under row-level security (docs/clients.md). The design: docs/design.md,
"Upload"; the fair turns: docs/clients.md, "Fair shares".
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import NamedTuple

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from core.batches import partitions, quota
from core.batches.model import Batch
from core.batches.store import batch_statement
from core.queries import q

log = logging.getLogger(__name__)


# The columns of batch_inputs_copy. Binary COPY with the types given up front
# costs about a third less CPU here than text COPY, and less in PostgreSQL too.
INPUT_TYPES = ("int8", "int4", "int4", "text", "text", "text", "text[]")

# Binary COPY's header (signature, flags, no extension) and trailer, around tuples
# that rows write themselves (see create()).
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"


# A batch this many chunks long or longer refreshes the queue's statistics
# before it commits. Until autovacuum gets round to it (up to a minute later),
# the planner would think the queue nearly empty and claim by sorting every
# ready chunk (a bitmap scan) instead of reading the first one off
# chunks_ready_idx: a cost that grows with the batch, paid on every claim.
ANALYZE_AFTER_CHUNKS = 500


@contextmanager
def _as_login_role(conn: psycopg.Connection) -> Iterator[None]:
    """Run the block as the connection's login role (SET LOCAL ROLE NONE), then as the caller again."""
    caller_role = conn.execute("SELECT current_user").fetchone()[0]
    conn.execute("SELECT set_config('role', 'none', true)")
    try:
        yield
    finally:  # after an error too, while the transaction can still run statements
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("SELECT set_config('role', %s, true)", (caller_role,))


class StagedRow(NamedTuple):
    """What an upload hands over per data row (webapp.upload.csv_reader.CsvRow is this class)."""

    line: int  # line where the record starts; the header is line 1
    client_id: str
    text: str
    problem: str | None = None  # why the row is set aside; None for a row to score
    detail: str | None = None
    fields: tuple[str, ...] | None = None  # the kept columns' values, as the batch's field_names


def new_public_id() -> str:
    """``batch-`` and 128 random bits in hex."""
    return f"batch-{secrets.token_hex(16)}"


#: A file name is kept to this many characters (it is shown on every list of batches).
FILENAME_CHARS = 255


def _shortened(filename: str | None) -> str | None:
    if filename is None or len(filename) <= FILENAME_CHARS:
        return filename
    return filename[: FILENAME_CHARS - 1] + "…"


def reserve_id(conn: psycopg.Connection) -> int:
    """An upload's batch id, its range's partitions made, in a short transaction of its own.

    Called on an idle connection, before the upload's transaction (which :func:`create` then
    runs with this id): making a partition ``ATTACH``es it, which holds ``SHARE UPDATE
    EXCLUSIVE`` on the four parents until commit, and inside an upload that would last as long
    as its body takes to arrive, while every other upload that needs a new range waits for it.
    An upload that fails afterwards leaves a gap in the ids, and partitions that later uploads
    fill or the purge drops with their range."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("reserve_id needs a connection outside any transaction: it commits")
    with conn.transaction():
        batch_id = conn.execute(q("batches_next_id")).fetchone()[0]
        partitions.make(conn, batch_id)
    return batch_id


def create(
    conn: psycopg.Connection,
    rows: Iterable[StagedRow],
    *,
    batch_id: int,
    chunk_size: int,
    filename: str | None,
    client: str | None = None,
    quotas: quota.Quotas = quota.NO_QUOTAS,
    metadata: dict[str, str] | None = None,
    expires_after: timedelta | None = None,
    callback_url: str | None = None,
    max_pending_webhooks: int | None = None,
) -> Batch:
    """Create a batch of ``client`` from ``rows``, as ``batch_id`` (:func:`reserve_id`); every row is
    written or none is (an exception from ``rows``, or a refusal by a quota of ``client``'s, rolls
    everything back)."""
    public_id = new_public_id()
    with conn.transaction():
        # Its rows' partitions, kept from the purge until commit (first, so the purge's window
        # between reserve_id's commit and here stays short).
        if not partitions.hold(conn, batch_id):
            # The purge dropped its range in that window (every other batch of it deleted): made
            # again here, holding the parents' ATTACH lock until this upload commits.
            partitions.make(conn, batch_id)
        quota.check_room(conn, client, quotas)
        if callback_url is not None and max_pending_webhooks is not None:
            quota.check_webhooks(conn, client, max_pending_webhooks, written=False)
        conn.execute(
            q("batches_insert"),
            {
                "batch_id": batch_id,
                "public_id": public_id,
                "chunk_size": chunk_size,
                "source_filename": _shortened(filename),
                "client": client,
                "metadata": Jsonb(metadata or {}),
                "expires_after": expires_after,
                "callback_url": callback_url,
            },
        )
        valid = invalid = 0
        # Rows may come already written as COPY tuples of INPUT_TYPES, numbered as below
        # (webapp.upload.csv_reader.CsvRows.copy_blocks, from C): then no Python runs per row,
        # which otherwise costs the upload more CPU than PostgreSQL spends on the COPY.
        copy_blocks = getattr(rows, "copy_blocks", None)
        blocks = copy_blocks(batch_id) if copy_blocks is not None else None
        with _as_login_role(conn), conn.cursor() as cur, cur.copy(q("batch_inputs_copy")) as copy:
            if blocks is not None:
                copy.write(COPY_SIGNATURE)
                for block in blocks:
                    copy.write(block)
                copy.write(COPY_TRAILER)
                valid, invalid = rows.counts
            else:
                copy.set_types(INPUT_TYPES)
                write = copy.write_row
                for row in rows:
                    if row.problem is None:
                        valid += 1
                        fields = list(row.fields) if row.fields else None
                        write((batch_id, valid, row.line, row.client_id, row.text, None, fields))
                    else:
                        invalid += 1
                        problem = f"{row.problem}\t{row.detail}"
                        write((batch_id, -invalid, row.line, row.client_id, "", problem, None))
        field_names = list(getattr(rows, "field_names", ()))
        if widen_through := getattr(rows, "widen_through", 0):
            # A JSON Lines file's key first seen after these rows were written: their fields are
            # padded with empty values, so that every row has one per field name.
            with _as_login_role(conn):
                conn.execute(
                    q("batch_inputs_widen_fields"),
                    {"batch_id": batch_id, "last_row": widen_through, "width": len(field_names)},
                )
        quota.claim_room(conn, client, quotas, valid, valid + invalid)
        if callback_url is not None and max_pending_webhooks is not None:
            quota.check_webhooks(conn, client, max_pending_webhooks, written=True)  # under the lock
        if invalid:
            conn.execute(q("batch_row_errors_move_from_inputs"), {"batch_id": batch_id})
        total = valid + invalid
        params = {
            "batch_id": batch_id,
            "total_count": total,
            "invalid_count": invalid,
            "valid_count": valid,
            "chunk_size": chunk_size,
            "field_names": field_names,
        }
        conn.execute(q("chunks_insert_for_batch"), params)
        if valid >= ANALYZE_AFTER_CHUNKS * chunk_size:
            # Before the turns are dealt: that statement reads the client's waiting chunks, and
            # with the statistics of a near-empty queue it would do so by a nested loop.
            with _as_login_role(conn):  # only the table's owner may ANALYZE it
                conn.execute(q("chunks_analyze"))
        conn.execute(q("chunks_share_client_turns"), {"batch_id": batch_id, "client": client})
        with conn.cursor(row_factory=class_row(Batch)) as cur:
            batch = cur.execute(batch_statement("batches_set_counts"), params).fetchone()
        conn.execute(q("batches_notify_ready"), {"public_id": public_id})
    log.info(
        "batch %s: %d rows written (%d set aside) in chunks of %d", public_id, total, invalid, chunk_size
    )
    return batch
