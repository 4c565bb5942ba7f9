"""Liveness and readiness for orchestrators and load balancers.

``/healthz`` answers 200 while the process can serve (no database call);
``/readyz`` answers 200 once the database is reachable and every migration
is applied, else 503 problem+json. Neither needs the API token.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from core.migrations import pending
from webapp.db import get_pool
from webapp.problems import RETRY_AFTER_SECONDS, Problem

bp = Blueprint("health", __name__)

PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz"}


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    with get_pool().connection() as conn:
        missing = pending(conn)
    if missing:
        raise Problem(
            503,
            "Not ready",
            f"Migrations not applied yet: {', '.join(f'{v:04d}' for v in missing)}.",
            "migrations-pending",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return jsonify(status="ready")
