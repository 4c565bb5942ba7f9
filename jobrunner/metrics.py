"""A runner's own Prometheus metrics, served on ``--metrics-port`` (or
RUNNER_METRICS_PORT) when given: how long chunks take, and how they end.

Service-wide figures (queue depth, rows scored, batches by status) come from
the database through the web app's /metrics, so they need no runner port.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

CHUNK_SECONDS = Histogram(
    "sentiment_runner_chunk_seconds",
    "Seconds from claim to commit of a chunk.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHUNKS = Counter("sentiment_runner_chunks_total", "Chunks by outcome.", ["outcome"])
ROWS = Counter("sentiment_runner_rows_total", "Rows committed, by outcome.", ["outcome"])


def serve(port: int) -> None:
    """Expose this process's metrics on http://0.0.0.0:port/metrics."""
    start_http_server(port)
