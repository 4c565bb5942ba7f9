"""The bounds every database session gets from its settings (core.connections), without a server."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from core.connections import conninfo
from core.settings import Settings


def test_sessions_bound_unacknowledged_data_by_themselves():
    """The service sets tcp_user_timeout itself, for libpq's socket and the server's: a connection
    with data in flight (a statement sent into a partition, a NOTIFY to a LISTENing runner), which
    keepalives do not probe, is dropped within the keepalive bound (runners) or STATEMENT_TIMEOUT
    (web), not after tcp_retries2 (about 15 minutes). The partitions themselves are in
    tests/integration/test_network_partitions.py."""
    settings = Settings(database_url="postgresql://postgres@192.0.2.10:5432/sentiment")
    for role in ("web", "runner"):
        parameters = conninfo_to_dict(conninfo(settings, role))
        expected = 30_000 if role == "web" else 60_000
        assert int(parameters["tcp_user_timeout"]) == expected, role
        assert f"tcp_user_timeout={expected}" in parameters["options"], role


def test_a_url_naming_several_hosts_keeps_them_all():
    """DATABASE_URL may list a primary and its standbys for libpq to choose the writable one
    (docs/operations.md, "Failover"): the connection string keeps every host, port and
    target_session_attrs, with the bounds added."""
    url = (
        "postgresql://sentiment@db1:5432,db2:5433/sentiment?target_session_attrs=read-write&connect_timeout=3"
    )
    for role in ("web", "runner"):
        parameters = conninfo_to_dict(conninfo(Settings(database_url=url), role))
        assert (parameters["host"], parameters["port"]) == ("db1,db2", "5432,5433"), role
        assert parameters["target_session_attrs"] == "read-write", role
        assert (parameters["dbname"], parameters["connect_timeout"]) == ("sentiment", "3"), role
        assert "idle_in_transaction_session_timeout" in parameters["options"], role


def test_the_web_pools_reconnection_backoff_is_capped():
    """psycopg_pool doubles the pause between its attempts to reconnect without bound; the web's
    pools stop at RECONNECT_MAX_DELAY, through psycopg_pool's ``_add_connection`` hook, which this
    checks is still what opens each connection."""
    import inspect

    from psycopg_pool import ConnectionPool

    from webapp.db import RECONNECT_MAX_DELAY, Reconnection, WebPool

    assert list(inspect.signature(ConnectionPool._add_connection).parameters) == [
        "self",
        "attempt",
        "growing",
    ]
    assert WebPool._add_connection is not ConnectionPool._add_connection
    attempt, now, delays = Reconnection(timeout=300), 0.0, []
    for _ in range(12):
        attempt.update_delay(now)
        delays.append(attempt.delay)
        now += attempt.delay
    assert max(delays) == RECONNECT_MAX_DELAY and delays[-1] == RECONNECT_MAX_DELAY
    assert delays[0] < 1.2  # psycopg_pool's first pause, about 1 s, kept
