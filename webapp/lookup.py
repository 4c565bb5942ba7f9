"""Lookups every endpoint shares: the settings, a batch by its public id, times as ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app

from core.queries import q
from core.settings import Settings
from webapp.db import get_pool
from webapp.problems import Problem

_PUBLIC_ID_LENGTH = len("batch-") + 32
FINISHED_WITH_RESULTS = {"completed", "completed_with_errors"}


def settings() -> Settings:
    return current_app.extensions["settings"]


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def not_found(public_id: str) -> Problem:
    return Problem(404, "Batch not found", f"There is no batch {public_id!r}.", "batch-not-found")


def load_batch(public_id: str) -> dict[str, Any]:
    # Ids have a fixed shape: anything else cannot exist, so skip the query.
    if len(public_id) != _PUBLIC_ID_LENGTH or not public_id.startswith("batch-"):
        raise not_found(public_id)
    with get_pool().connection() as conn:
        cur = conn.execute(q("batches_get"), {"public_id": public_id})
        row = cur.fetchone()
        if row is None:
            raise not_found(public_id)
        return dict(zip([c.name for c in cur.description], row, strict=True))


def require_results(batch: dict[str, Any]) -> None:
    """409 unless the batch finished with results to read."""
    if batch["status"] not in FINISHED_WITH_RESULTS:
        raise Problem(
            409,
            "Batch not completed",
            f"Results are available once the batch is completed; it is {batch['status']} "
            f"({batch['processed_count']} of {batch['total_count'] - batch['invalid_count']} rows scored).",
            "batch-not-completed",
            status_of_batch=batch["status"],
        )
