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
