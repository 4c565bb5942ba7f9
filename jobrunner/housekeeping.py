"""What runners do for the queue between rounds, every RELEASE_EXPIRED_SECONDS.

* put back chunks whose lease expired (any runner; the statement skips what
  another runner has locked, so several runners never wait on each other);
* forget runners whose heartbeat stopped;
* purge and reap: mark batches past RESULTS_TTL deleted, and remove the rows
  of deleted batches in bounded steps. Only one runner does this at a time
  (a session advisory lock taken with ``pg_try_advisory_lock``: the others
  skip it instead of waiting; ``python -m jobrunner purge`` takes the same
  lock), each step its own short transaction on rows no runner reads, so no
  other runner waits on it; the runner doing it pauses its own scoring for
  at most REAP_BUDGET_SECONDS per turn (plus marking up to 100 batches);
* make the partitions of the next batch ids ahead of the uploads, and (the
  purger) drop whole partitions whose batches are all deleted
  (``core.batches.partitions``);
* make sure the runner's webhook deliverer thread runs (``jobrunner.webhooks``).
"""

from __future__ import annotations

import logging

import psycopg

from core import batches
from core.batches import partitions
from core.batches.queue import release_expired
from core.queries import q
from core.settings import Settings
from jobrunner import webhooks

log = logging.getLogger(__name__)

#: An arbitrary constant shared by every runner: whoever holds it purges and reaps.
REAPER_LOCK_KEY = 7_240_113_902
#: Time one runner spends removing deleted batches' rows per housekeeping turn.
REAP_BUDGET_SECONDS = 0.5


def housekeep(conn: psycopg.Connection, settings: Settings) -> None:
    """One turn of housekeeping on the runner's autocommit connection."""
    webhooks.ensure_running(settings)  # the webhook deliverer threads, started by the first turn
    release_expired(conn)
    partitions.make_ahead(conn)  # the next batch ids' partitions, before their uploads need them
    for (name,) in conn.execute(q("runners_expire"), {"expiry_seconds": settings.runner_expiry_seconds}):
        log.info("runner %s stopped beating its heartbeat; removed from runners", name)
    if not conn.execute("SELECT pg_try_advisory_lock(%s) AS mine", (REAPER_LOCK_KEY,)).fetchone()[0]:
        return  # another runner is purging
    try:
        # Every turn, RESULTS_TTL or not: a batch may carry its own expires_after.
        purged = batches.purge(conn, settings.results_ttl_seconds)
        if purged:
            log.info("purged %d batch(es) past their expiry (expires_after, or RESULTS_TTL)", purged)
        batches.forget_idempotency_keys(conn, settings.idempotency_ttl_seconds)
        if swept := batches.sweep_done_chunks(conn):
            log.info("dropped %d done chunk(s) of finished batches left behind", swept)
        ttl = settings.results_ttl_seconds or 0
        removed = batches.reap(conn, REAP_BUDGET_SECONDS, older_than_seconds=ttl)
        if removed:
            log.info("removed %d row(s) of deleted batches", removed)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (REAPER_LOCK_KEY,))
