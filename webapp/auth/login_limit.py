"""The sign-in rate limit: wrong keys are counted per client address.

Every wrong key (or API_TOKEN), typed into ``/login`` or sent as ``Authorization: Bearer``,
counts against its address in ``login_failures``, shared by every worker and web host. After
LOGIN_MAX_FAILURES within LOGIN_FAILURE_WINDOW (from the first), every sign-in from that address,
right or wrong, is a 429 with ``Retry-After`` until the window ends: refusing the right key too
keeps a guesser from learning which guess was right. A right key at ``/login`` clears the count.
The address is the TCP peer: forwarded headers are not trusted (any client could forge them), so
behind a reverse proxy every client shares the proxy's limit.
"""

from __future__ import annotations

import logging

import psycopg
from flask import request
from psycopg.rows import dict_row

from core.queries import q
from core.settings import Settings
from webapp.problems import Problem

log = logging.getLogger(__name__)


def client_address() -> str:
    """Where the current request came from (the TCP peer)."""
    return request.remote_addr or "unknown"


def wait_seconds(conn: psycopg.Connection, config: Settings, address: str) -> int | None:
    """Seconds until ``address`` may try to sign in again, or None if it may now."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q("login_failures_get"), {"client_address": address}).fetchone()
    if row is None or row["failures"] < config.login_max_failures:
        return None
    return row["retry_after_seconds"]


def record_failure(conn: psycopg.Connection, config: Settings, address: str) -> int | None:
    """Count one wrong token from ``address``; the seconds it must now wait if this one passed the
    limit. Counted atomically before the answer is chosen, so concurrent guesses cannot get more
    than LOGIN_MAX_FAILURES "wrong" answers between them: past the limit, a wrong token is a 429
    like every other sign-in from that address."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q("login_failures_delete_expired"))
        row = cur.execute(
            q("login_failures_record"),
            {"client_address": address, "window_seconds": config.login_failure_window},
        ).fetchone()
    if row["failures"] == config.login_max_failures:
        log.warning(
            "%d wrong tokens from %s: its sign-ins are refused for %d s",
            row["failures"],
            address,
            row["retry_after_seconds"],
        )
    return row["retry_after_seconds"] if row["failures"] > config.login_max_failures else None


def clear(conn: psycopg.Connection, address: str) -> None:
    """Forget ``address``'s failures (it just gave the right token)."""
    conn.execute(q("login_failures_clear"), {"client_address": address})


def too_many(wait: int) -> Problem:
    """The 429 for an address past the limit."""
    return Problem(
        429,
        "Too many failed sign-ins",
        f"Too many wrong tokens came from your address; try again in {wait} s.",
        "too-many-failed-logins",
        {"Retry-After": str(wait)},
    )
