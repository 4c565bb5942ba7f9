"""How the web app and the runners connect to PostgreSQL: the bounds every session carries.

:func:`conninfo` turns DATABASE_URL and the settings into one role's libpq connection
string. The bounds travel in it (``-c`` options, libpq's keepalive and
``tcp_user_timeout`` parameters), so no query can forget them: they hold from the
session's start, cost no round trip and survive ``RESET``. Every role gets
IDLE_IN_TRANSACTION_TIMEOUT, and keepalives and ``tcp_user_timeout`` at both ends, so
a vanished peer's transaction is rolled back within about a minute; ``web`` also gets
STATEMENT_TIMEOUT and works as ``sentiment_web``, which row-level security applies to
whoever DATABASE_URL names. What each bound does: docs/security.md ("Database
sessions") and docs/operations.md ("Network partitions").

DATABASE_URL may list several hosts (libpq's multi-host form, ``postgresql://u@h1:5432,h2:5432/db
?target_session_attrs=read-write``); the string keeps them, and libpq connects to the first that
is up and writable. :data:`SESSION_LOST` are the errors after which a session is replaced rather
than used again, and :func:`server_check` holds a pooled session to the URL's
``target_session_attrs`` each time it is handed out, so a server that became read-only (a
standby, a demoted or fenced primary) is left for the one that took over (docs/operations.md,
"Failover").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from core.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["web", "runner"]

#: Seconds between keepalive probes once the first went unanswered, and how many may go unanswered.
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 3

#: Errors after which a session is dropped and a new one opened: the server is gone or ended the
#: session, or it is read-only (SQLSTATE 25006: a standby, or a primary demoted or fenced by a
#: failover), so a new connection is what finds the server that now takes writes.
SESSION_LOST = (
    psycopg.OperationalError,
    psycopg.errors.IdleInTransactionSessionTimeout,
    psycopg.errors.ReadOnlySqlTransaction,
)


class ReadOnlyServer(psycopg.OperationalError):
    """A pooled session's server no longer takes writes, though the URL asks for one that does."""


def milliseconds(seconds: float) -> int:
    """PostgreSQL's unit for timeouts; 0 stays 0 (no bound), anything else at least 1 ms."""
    return 0 if seconds <= 0 else max(1, round(seconds * 1000))


def session_parameters(settings: Settings, role: Role) -> dict[str, int | str]:
    """The server settings a session of ``role`` starts with (sent as ``-c name=value``)."""
    parameters = {
        "idle_in_transaction_session_timeout": milliseconds(settings.idle_in_transaction_timeout),
        "tcp_keepalives_idle": settings.db_keepalive_seconds,
        "tcp_keepalives_interval": KEEPALIVE_INTERVAL,
        "tcp_keepalives_count": KEEPALIVE_COUNT,
    }
    parameters["tcp_user_timeout"] = user_timeout_ms(settings, role)
    if role == "web":
        parameters = {"role": "sentiment_web", **parameters}
        parameters["statement_timeout"] = milliseconds(settings.statement_timeout)
    return parameters


def user_timeout_ms(settings: Settings, role: Role) -> int:
    """How long sent data may go unacknowledged before the connection is dropped, at either end.

    Keepalives probe only an idle connection; one with data in flight (a statement sent into a
    partition, a NOTIFY on its way to a LISTENing runner) would retransmit for tcp_retries2, about
    15 minutes. The web's bound is STATEMENT_TIMEOUT (no request should wait longer anyway); the
    runners' is the keepalive bound. It counts only time without any acknowledgment from the peer's
    kernel, never a slow statement, so it cannot cut a long export short.
    """
    keepalive_ms = (settings.db_keepalive_seconds + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT) * 1000
    if role == "web" and settings.statement_timeout > 0:
        return milliseconds(settings.statement_timeout)
    return keepalive_ms


def conninfo(settings: Settings, role: Role, url: str | None = None) -> str:
    """The libpq connection string for a ``role`` session: DATABASE_URL (or ``url``, e.g. the
    replica's READ_DATABASE_URL) plus the bounds above."""
    url = url or settings.database_url
    given = conninfo_to_dict(url)
    ours = " ".join(f"-c {name}={value}" for name, value in session_parameters(settings, role).items())
    options = f"{ours} {given['options']}" if given.get("options") else ours
    return make_conninfo(
        url,
        options=options,
        keepalives=1,
        keepalives_idle=settings.db_keepalive_seconds,
        keepalives_interval=KEEPALIVE_INTERVAL,
        keepalives_count=KEEPALIVE_COUNT,
        tcp_user_timeout=given.get("tcp_user_timeout") or user_timeout_ms(settings, role),
        application_name=given.get("application_name") or f"sentiment-{role}",
    )


def server_check(url: str) -> Callable[[psycopg.Connection], None]:
    """A pool's ``check``: the session answers, and its server is still what the URL's
    ``target_session_attrs`` asks for (``read-write``: not read-only; ``primary``: not a standby).

    libpq applies ``target_session_attrs`` only when it connects; a pooled session outlives that
    moment. The server reports ``in_hot_standby`` and ``default_transaction_read_only`` whenever
    they change (PostgreSQL 14 and later), and the check's empty query brings the reports in, so
    this costs no round trip more than psycopg_pool's own check.
    """
    wanted = conninfo_to_dict(url).get("target_session_attrs", "any")

    def check(conn: psycopg.Connection) -> None:
        ConnectionPool.check_connection(conn)
        standby = conn.info.parameter_status("in_hot_standby") == "on"
        read_only = standby or conn.info.parameter_status("default_transaction_read_only") == "on"
        if (wanted == "read-write" and read_only) or (wanted == "primary" and standby):
            where = f"{conn.info.host}:{conn.info.port}"
            log.warning("dropping a pooled session to %s: its server is read-only now", where)
            conn.close()  # closed, so the pool replaces it rather than handing it out again
            raise ReadOnlyServer(f"{where} is read-only")

    return check
