"""The quotas of one API key: rows waiting or being scored (QUOTA_QUEUED_ROWS), unfinished batches
(QUOTA_BATCHES) and rows kept (QUOTA_STORED_ROWS).

An upload is checked twice, inside its own transaction: before its body is
read (a client already at a quota is refused at once, nothing read), and
after its rows are written, when their number is known. The second check holds
a per-client advisory lock until commit (taken by every upload, quota or not:
the fair-turn dealing needs it too), so two uploads of one client racing each
other are counted one after the other and cannot both squeeze into the same
room. A refusal raises :class:`core.errors.OverQuota` (429), which rolls the
upload back: nothing of it is stored.

WEBHOOK_MAX_PENDING is checked the same two ways for an upload with a
``callback_url``: the key's webhooks still waiting (batches processing with one,
events not yet delivered or given up), so one key cannot fill the deliverers'
queue without bound (:func:`check_webhooks`).

Only API keys have quotas: batches uploaded without a key (no keys yet, or
API_TOKEN) are not counted against anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from core.errors import OverQuota
from core.queries import q

#: Seconds a client over a quota of work in progress is told to wait: about what runners take to
#: make room for a small upload; the client_usage view shows the real backlog.
RETRY_AFTER_SECONDS = 60
#: First key of the two-key advisory locks that serialise the end of one client's uploads.
CLIENT_LOCK_CLASS = 0x5155


@dataclass(frozen=True)
class Quotas:
    """A key's limits (None: no limit)."""

    queued_rows: int | None = None  # QUOTA_QUEUED_ROWS
    batches: int | None = None  # QUOTA_BATCHES
    stored_rows: int | None = None  # QUOTA_STORED_ROWS


#: No limit at all (batches uploaded without a key are never counted anyway).
NO_QUOTAS = Quotas()


def queued_rows(conn: psycopg.Connection, client: str) -> int:
    """Rows of ``client``'s processing batches still waiting or being scored."""
    return conn.execute(q("batches_queued_rows"), {"client": client}).fetchone()[0]


def unfinished_batches(conn: psycopg.Connection, client: str) -> int:
    """``client``'s batches still processing (one being uploaded in this transaction included)."""
    return conn.execute(q("batches_unfinished"), {"client": client}).fetchone()[0]


def stored_rows(conn: psycopg.Connection, client: str) -> int:
    """Rows of ``client``'s batches not deleted, finished or not, set-aside rows included."""
    return conn.execute(q("batches_stored_rows"), {"client": client}).fetchone()[0]


def _over_queued(client: str, queued: int, adding: int, limit: int) -> OverQuota:
    alone = f" This file alone has {adding} rows: split it." if adding > limit else ""
    return OverQuota(
        "Quota exceeded",
        f"Key {client!r} has {queued} rows waiting or being scored; {adding} more would pass its quota "
        f"of {limit} (QUOTA_QUEUED_ROWS). Retry once some of them are scored.{alone}",
        "quota-exceeded",
        retry_after=RETRY_AFTER_SECONDS,
        queued_rows=queued,
        quota=limit,
    )


def _over_batches(client: str, unfinished: int, limit: int) -> OverQuota:
    return OverQuota(
        "Quota exceeded",
        f"Key {client!r} has {unfinished} batches still processing, its quota (QUOTA_BATCHES). "
        "Retry once one of them finishes, or cancel one.",
        "quota-exceeded",
        retry_after=RETRY_AFTER_SECONDS,
        unfinished_batches=unfinished,
        quota=limit,
    )


def _over_stored(client: str, stored: int, adding: int, limit: int) -> OverQuota:
    alone = f" This file alone has {adding} rows: split it." if adding > limit else ""
    return OverQuota(
        "Quota exceeded",
        f"Key {client!r} keeps {stored} rows in its batches, finished ones and set-aside rows included; "
        f"{adding} more would pass its quota of {limit} (QUOTA_STORED_ROWS). Delete batches you no longer "
        f"need (DELETE /batch/<id>), or wait for them to expire.{alone}",
        "quota-exceeded",
        stored_rows=stored,
        quota=limit,
    )


def check_room(conn: psycopg.Connection, client: str | None, quotas: Quotas) -> None:
    """Before reading an upload: refuse at once if the client has no room left at all."""
    if client is None:
        return
    if quotas.batches is not None and (unfinished := unfinished_batches(conn, client)) >= quotas.batches:
        raise _over_batches(client, unfinished, quotas.batches)
    if quotas.queued_rows is not None and (queued := queued_rows(conn, client)) >= quotas.queued_rows:
        raise _over_queued(client, queued, 1, quotas.queued_rows)
    if quotas.stored_rows is not None and (stored := stored_rows(conn, client)) >= quotas.stored_rows:
        raise _over_stored(client, stored, 1, quotas.stored_rows)


def claim_room(conn: psycopg.Connection, client: str | None, quotas: Quotas, valid: int, total: int) -> None:
    """Once the rows are written (``valid`` to score, ``total`` with the set-aside ones): take the
    client's lock, then refuse unless this batch and its rows fit.

    The lock is held until the transaction ends, quota or not: it serialises the end of one client's
    uploads, so the rows count for the next upload's quota check as soon as they commit, and the next
    upload's dealing of the client's fair turns (chunks_share_client_turns) sees this batch's chunks.
    Two uploads dealing at once would each deal from the same turn, and the client would get a turn
    per upload.
    """
    conn.execute(q("batches_lock_client"), {"lock_class": CLIENT_LOCK_CLASS, "client": client or ""})
    if client is None:
        return
    # This batch's own row is already in: it counts itself, with no rows yet.
    if quotas.batches is not None and (unfinished := unfinished_batches(conn, client)) > quotas.batches:
        raise _over_batches(client, unfinished - 1, quotas.batches)
    if quotas.queued_rows is not None and (queued := queued_rows(conn, client)) + valid > quotas.queued_rows:
        raise _over_queued(client, queued, valid, quotas.queued_rows)
    if quotas.stored_rows is not None and (stored := stored_rows(conn, client)) + total > quotas.stored_rows:
        raise _over_stored(client, stored, total, quotas.stored_rows)


def check_webhooks(conn: psycopg.Connection, client: str | None, limit: int, *, written: bool) -> None:
    """Refuse (OverQuota, 429) an upload with a callback_url when ``client`` has ``limit`` webhooks
    waiting already: before the body is read, and once the batch is ``written`` (it counts itself
    then), under the client's lock."""
    if client is None:
        return
    pending = conn.execute(q("webhook_events_pending_count"), {"client": client}).fetchone()[0]
    pending -= written
    if pending >= limit:
        raise OverQuota(
            "Too many pending webhooks",
            f"Key {client!r} has {pending} webhooks waiting to be delivered (or its batches still "
            f"processing with a callback_url); at most {limit} may wait (WEBHOOK_MAX_PENDING). Upload "
            "without a callback_url, or retry once some of them are delivered or given up.",
            "too-many-pending-webhooks",
            retry_after=RETRY_AFTER_SECONDS,
            pending_webhooks=pending,
            limit=limit,
        )


def claim_webhook_place(conn: psycopg.Connection, client: str | None, limit: int) -> None:
    """Refuse (OverQuota, 429) a webhook sent again while ``client`` has ``limit`` waiting, under
    the client's lock (an upload racing it counts after it)."""
    conn.execute(q("batches_lock_client"), {"lock_class": CLIENT_LOCK_CLASS, "client": client or ""})
    check_webhooks(conn, client, limit, written=False)
