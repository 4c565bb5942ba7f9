"""What a runner does for the queue between rounds, every RELEASE_EXPIRED_SECONDS.

Any runner puts back chunks whose lease expired (skipping what others hold locked,
so runners never wait on each other), forgets runners whose heartbeat stopped, makes
the next batch ids' partitions and keeps its webhook deliverer threads running.
Only the runner that gets REAPER_LOCK_KEY (tried, never waited for; ``python -m
jobrunner purge`` takes it too) purges expired batches and removes deleted batches'
rows, in short transactions, for at most REAP_BUDGET_SECONDS a turn, waiting for
locks included (core/batches/budget.py): housekeeping
runs on the runner's database thread, ahead of its commit and next claim. The
design: docs/design.md, "Delete and purge".
"""

from __future__ import annotations

import logging

import psycopg

from core import batches
from core.batches import partitions
from core.batches.budget import Budget, BudgetSpent
from core.batches.queue import release_expired
from core.queries import q
from core.settings import Settings
from jobrunner import webhooks

log = logging.getLogger(__name__)

#: An arbitrary constant shared by every runner: whoever holds it purges and reaps.
REAPER_LOCK_KEY = 7_240_113_902
#: Time one runner spends purging and removing deleted batches' rows per housekeeping turn,
#: waiting for locks included.
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
        reaper_turn(conn, settings)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (REAPER_LOCK_KEY,))


def reaper_turn(
    conn: psycopg.Connection, settings: Settings, budget_seconds: float = REAP_BUDGET_SECONDS
) -> None:
    """Purge, forget old Idempotency-Keys, sweep done chunks and reap, for ``budget_seconds`` at
    most, lock waits included (core.batches.budget); the holder of REAPER_LOCK_KEY runs it. A lock
    not granted within what is left ends the turn, logged at INFO, and a later turn goes on."""
    budget = Budget(budget_seconds)
    removed = 0
    try:
        with budget.applied(conn):
            # Every turn, RESULTS_TTL or not: a batch may carry its own expires_after.
            purged = batches.purge(conn, settings.results_ttl_seconds or 0, budget=budget)
            if purged:
                log.info("purged %d batch(es) past their expiry (expires_after, or RESULTS_TTL)", purged)
            budget.bound(conn)
            batches.forget_idempotency_keys(conn, settings.idempotency_ttl_seconds)
            budget.bound(conn)
            if swept := batches.sweep_done_chunks(conn):
                log.info("dropped %d done chunk(s) of finished batches left behind", swept)
            removed = batches.reap(conn, budget, older_than_seconds=settings.results_ttl_seconds or 0)
    except BudgetSpent as stop:
        removed = stop.removed
        level = logging.INFO if stop.lock_wait else logging.DEBUG
        log.log(level, "reaper turn stopped: %s; the rest waits for the next turn", stop)
    if removed:
        log.info("removed %d row(s) of deleted batches", removed)
