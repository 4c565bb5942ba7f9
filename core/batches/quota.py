"""QUOTA_QUEUED_ROWS: how many rows one API key may have waiting or being scored at once.

An upload is checked twice, inside its own transaction: before its body is
read (a client already at its quota is refused at once, nothing read), and
after its rows are written, when their number is known. The second check holds
a per-client advisory lock until commit (taken by every upload, quota or not:
the fair-turn dealing needs it too), so two uploads of one client racing each
other are counted one after the other and cannot both squeeze into the same
room. A refusal raises :class:`core.errors.OverQuota` (429 with
Retry-After), which rolls the upload back: nothing of it is stored.

WEBHOOK_MAX_PENDING is checked the same two ways for an upload with a
``callback_url``: the key's webhooks still waiting (batches processing with one,
events not yet delivered or given up), so one key cannot fill the deliverers'
queue without bound (:func:`check_webhooks`).

Only API keys have quotas: batches uploaded without a key (no keys yet, or
API_TOKEN) are not counted against anything.
"""

from __future__ import annotations

import psycopg

from core.errors import OverQuota
from core.queries import q

#: Seconds a client over its quota is told to wait: about what runners take to make room for a
#: small upload; the client_usage view shows the real backlog.
RETRY_AFTER_SECONDS = 60
#: First key of the two-key advisory locks that serialise the end of one client's uploads.
CLIENT_LOCK_CLASS = 0x5155


def queued_rows(conn: psycopg.Connection, client: str) -> int:
    """Rows of ``client``'s processing batches still waiting or being scored."""
    return conn.execute(q("batches_queued_rows"), {"client": client}).fetchone()[0]


def _refuse(client: str, queued: int, adding: int, limit: int) -> OverQuota:
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


def check_room(conn: psycopg.Connection, client: str | None, limit: int | None) -> None:
    """Before reading an upload: refuse at once if the client has no room left at all."""
    if client is None or limit is None:
        return
    queued = queued_rows(conn, client)
    if queued >= limit:
        raise _refuse(client, queued, 1, limit)


def claim_room(conn: psycopg.Connection, client: str | None, limit: int | None, adding: int) -> None:
    """Once the rows are written: take the client's lock, then refuse unless ``adding`` more fit.

    The lock is held until the transaction ends, quota or not: it serialises the end of one client's
    uploads, so the rows count for the next upload's quota check as soon as they commit, and the next
    upload's dealing of the client's fair turns (chunks_share_client_turns) sees this batch's chunks.
    Two uploads dealing at once would each deal from the same turn, and the client would get a turn
    per upload.
    """
    conn.execute(q("batches_lock_client"), {"lock_class": CLIENT_LOCK_CLASS, "client": client or ""})
    if client is None or limit is None:
        return
    queued = queued_rows(conn, client)
    if queued + adding > limit:
        raise _refuse(client, queued, adding, limit)


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
