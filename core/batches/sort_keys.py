"""A final batch's sort keys (``batch_result_keys``): written on demand, in bounded steps, once.

Filtered (``?sentiment=``) and score-ordered listings are index ranges of the keys, so scoring
maintains no index for them. The first request for such a listing writes the keys, at most
:data:`STEP` row numbers per request so that no statement nears STATEMENT_TIMEOUT however big
the batch; it answers "not ready" (503, Retry-After) until they reach the end, and each step
commits with its request. One request writes at a time: the others answer at once.
"""

from __future__ import annotations

import psycopg

from core.batches.model import Batch
from core.batches.store import not_found
from core.errors import NotReady
from core.queries import q

#: Row numbers one request covers at most (a few seconds of writing).
STEP = 250_000


def keys_written(conn: psycopg.Connection, batch: Batch) -> bool:
    """Whether the batch's sort keys are all written."""
    return conn.execute(q("batch_result_keys_written"), {"batch_id": batch.id}).fetchone()[0]


def write_keys(conn: psycopg.Connection, batch: Batch, step: int | None = None) -> bool:
    """Write the next step of the batch's sort keys, unless another request is writing them; whether
    they are all written now. Inside the caller's transaction, which must commit to keep them."""
    if keys_written(conn, batch):
        return True
    params = {"batch_id": batch.id, "step": step or STEP}
    taken = conn.execute(q("batch_result_keys_take"), params).fetchone()
    if taken is None:  # deleted (or removed) since the request read it
        raise not_found(batch.public_id)
    if not taken[0]:
        return False
    return conn.execute(q("batch_result_keys_write"), params).fetchone()[0]


def require_keys(conn: psycopg.Connection, batch: Batch) -> None:
    """Refuse (503, retry shortly) to read a listing of the keys before they are all written here."""
    if not keys_written(conn, batch):
        raise NotReady(
            "Listing not ready yet",
            "This batch's filtered and ordered listings are being prepared; retry in a second.",
            "listing-not-ready",
            retry_after=1,
        )
