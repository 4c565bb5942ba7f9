"""``GET /metrics`` in the Prometheus text format; with keys, for an admin key only (it names every client).

The web workers' own counters (uploads by outcome, rows ingested) use prometheus-client's
multiprocess mode (the gunicorn config sets PROMETHEUS_MULTIPROC_DIR), so a scrape sums every
worker instead of seeing whichever answered. Figures about the whole service are read from
PostgreSQL at scrape time, so every worker gives the same and they include the runners' work:
rows by outcome, chunks ready and claimed, batches by status, runners alive, dead tuples, and per
API key the rows uploaded, scored and queued (the ``client_usage`` view). The runners serve their
own process metrics on ``--metrics-port`` (jobrunner/metrics.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from psycopg.rows import dict_row

from core.batches import STATUSES
from core.clients import require_admin
from core.queries import q
from webapp.db import caller, connection

bp = Blueprint("metrics", __name__)

UPLOADS = Counter("sentiment_uploads_total", "Uploads by outcome.", ["outcome"])
ROWS_INGESTED = Counter("sentiment_rows_ingested_total", "Data rows read from accepted uploads.")


class DatabaseCollector(Collector):
    """Service-wide figures read from PostgreSQL at scrape time (one query)."""

    def collect(self) -> Iterator[Metric]:
        with connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            figures = cur.execute(q("batches_metrics")).fetchone()
        batches = GaugeMetricFamily("sentiment_batches", "Batches by status.", labels=["status"])
        for status in STATUSES:
            batches.add_metric([status], (figures["by_status"] or {}).get(status, 0))
        yield batches
        scored = GaugeMetricFamily(
            "sentiment_rows", "Rows of the batches kept, by outcome.", labels=["outcome"]
        )
        scored.add_metric(["scored"], figures["scored"])
        scored.add_metric(["failed"], figures["failed"])
        scored.add_metric(["invalid"], figures["invalid"])
        yield scored
        queue = GaugeMetricFamily("sentiment_queue_chunks", "Chunks in the queue by state.", labels=["state"])
        queue.add_metric(["ready"], figures["ready"])
        queue.add_metric(["claimed"], figures["claimed"])
        yield queue
        yield GaugeMetricFamily(
            "sentiment_runners", "Runners with a recent heartbeat.", value=figures["runners"]
        )
        dead = GaugeMetricFamily(
            "sentiment_dead_tuples",
            "Dead row versions per table, waiting for vacuum (PostgreSQL's statistics).",
            labels=["table"],
        )
        for table, count in sorted((figures["dead_tuples"] or {}).items()):
            dead.add_metric([table], count)
        yield dead
        yield from _usage(figures["usage"] or {})


def _usage(usage: dict[str, list[int]]) -> Iterator[Metric]:
    """Per API key (label ``client``): see client_usage. Batches uploaded without a key have only the
    queued gauge (``client=""``): their rows leave no count behind when they are removed, and a
    counter must never go down."""
    families = [
        CounterMetricFamily("sentiment_client_rows_uploaded", "Rows uploaded, per key.", labels=["client"]),
        CounterMetricFamily("sentiment_client_rows_scored", "Rows scored, per key.", labels=["client"]),
        GaugeMetricFamily(
            "sentiment_client_rows_queued",
            "Rows waiting or being scored now, per key (what QUOTA_QUEUED_ROWS bounds).",
            labels=["client"],
        ),
    ]
    for client, (uploaded, scored, queued) in sorted(usage.items()):
        if client:  # rows without a key are not kept once their batches go: no counter for them
            families[0].add_metric([client], uploaded)
            families[1].add_metric([client], scored)
        families[2].add_metric([client], queued)
    yield from families


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


_DATABASE = DatabaseCollector()


@bp.get("/metrics")
def metrics() -> Response:
    """Every figure, for an admin key only: the per-key usage names every client."""
    require_admin(caller(), "/metrics names every client: it needs an admin key.")
    registry = CollectorRegistry()
    registry.register(_DATABASE)
    body = generate_latest(_registry()) + generate_latest(registry)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
