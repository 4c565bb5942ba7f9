"""The sign-in rate limit: wrong credentials are counted per client address and credential family.

Every wrong credential, typed into ``/login`` or sent as ``Authorization: Bearer``, counts against
its address and its family in ``login_failures``, shared by every worker and web host, and nothing
clears the count before its window ends (a success does not: a key holder could otherwise
alternate guesses with sign-ins of its own key). The families:

- ``api_token``: anything not shaped like a client key, which can only be right if it is API_TOKEN.
  Past LOGIN_MAX_FAILURES within LOGIN_FAILURE_WINDOW (from the first), every credential of this
  family from that address, right or wrong, is a 429 with ``Retry-After`` until the window ends:
  refusing the right one too keeps a guesser from learning which guess was right.
- ``client_key``: shaped like our keys (:func:`core.clients.looks_like_a_key`), 256 random bits
  that no one can guess. A valid key is always accepted, whatever its address's failures; past the
  limit, a made-up one gets 429 instead of 401. A revoked key is not counted: it is no guess.

The address is the client's (:func:`client_address`), an IPv6 client's /64: a host is commonly given
a whole /64 and can pick any address in it.
"""

from __future__ import annotations

import ipaddress
import logging

import psycopg
from flask import request
from psycopg.rows import dict_row

from core import clients
from core.queries import q
from core.settings import Settings
from webapp.problems import Problem

log = logging.getLogger(__name__)

API_TOKEN_FAMILY = "api_token"
CLIENT_KEY_FAMILY = "client_key"


def family(credential: str) -> str:
    """The family a presented credential belongs to."""
    return CLIENT_KEY_FAMILY if clients.looks_like_a_key(credential) else API_TOKEN_FAMILY


def counted_address(address: str) -> str:
    """What failures from ``address`` count against: the address itself, an IPv6 one's /64, an
    IPv4 client written as IPv6 (``::ffff:192.0.2.1``) as IPv4."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def client_address() -> str:
    """Where the current request came from, as counted: the TCP peer, or the client a proxy of
    FORWARDED_ALLOW_IPS names (webapp.forwarded)."""
    return counted_address(request.remote_addr or "unknown")


def wait_seconds(conn: psycopg.Connection, config: Settings, address: str, kind: str) -> int | None:
    """Seconds until ``address`` may present a credential of family ``kind`` again, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q("login_failures_get"), {"client_address": address, "family": kind}).fetchone()
    if row is None or row["failures"] < config.login_max_failures:
        return None
    return row["retry_after_seconds"]


def record_failure(conn: psycopg.Connection, config: Settings, address: str, kind: str) -> int | None:
    """Count one wrong credential of family ``kind`` from ``address``; the seconds it must now wait
    if this one passed the limit. Counted atomically before the answer is chosen, so concurrent
    guesses cannot get more than LOGIN_MAX_FAILURES "wrong" answers between them: past the limit, a
    wrong credential is a 429."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q("login_failures_delete_expired"))
        row = cur.execute(
            q("login_failures_record"),
            {"client_address": address, "family": kind, "window_seconds": config.login_failure_window},
        ).fetchone()
    if row["failures"] == config.login_max_failures:
        log.warning(
            "%d wrong credentials (%s) from %s: refused for %d s",
            row["failures"],
            kind,
            address,
            row["retry_after_seconds"],
        )
    return row["retry_after_seconds"] if row["failures"] > config.login_max_failures else None


def too_many(wait: int) -> Problem:
    """The 429 for an address past the limit."""
    return Problem(
        429,
        "Too many failed sign-ins",
        f"Too many wrong tokens came from your address; try again in {wait} s.",
        "too-many-failed-logins",
        {"Retry-After": str(wait)},
    )
