"""A runner's own Prometheus metrics, served on ``--metrics-port`` (or
RUNNER_METRICS_PORT) when given: how long chunks take, and how they end.

The port binds 127.0.0.1 unless ``--metrics-host`` (RUNNER_METRICS_HOST)
says otherwise: it needs no token, so it is not offered beyond this machine
by default.

Service-wide figures (queue depth, rows scored, batches by status) come from
the database through the web app's /metrics, so they need no runner port.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

CHUNK_SECONDS = Histogram(
    "sentiment_runner_chunk_seconds",
    "Seconds from claim to commit of a chunk.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHUNKS = Counter("sentiment_runner_chunks_total", "Chunks by outcome.", ["outcome"])
ROWS = Counter("sentiment_runner_rows_total", "Rows committed, by outcome.", ["outcome"])


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics on http://host:port/metrics."""
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
