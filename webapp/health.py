"""Liveness and readiness for orchestrators and load balancers.

``/healthz`` answers 200 while the process can serve (no database call);
``/readyz`` answers 200 once the database is reachable, every migration is
applied and the database's disk has room, else 503 problem+json saying which
(``database-unavailable``, ``migrations-pending``, ``storage-full``). Neither
needs the API token.

The room check writes nothing that stays: a sort of 5,000 integers with
``work_mem`` at 64 kB spills about 200 kB to temporary files in the
database's default tablespace (where the uploads' rows go, unless
``temp_tablespaces`` names another), and a full disk refuses it with 53100.
So ``/readyz`` turns 503 when uploads would be refused (507) and back to 200
the moment space is freed, without a row, a dead tuple or a byte of WAL per
probe.
"""

from __future__ import annotations

import psycopg
from flask import Blueprint, Response, jsonify

from core.disk_full import RETRY_AFTER_SECONDS as DISK_FULL_RETRY_AFTER_SECONDS
from core.disk_full import is_disk_full, public_reason
from core.migrations import pending
from core.queries import q
from webapp.db import get_pool
from webapp.problems import RETRY_AFTER_SECONDS, Problem

bp = Blueprint("health", __name__)

PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz"}

#: The sort's memory: small enough that 5,000 integers spill to a temporary file.
PROBE_WORK_MEM = "64kB"


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    with get_pool().connection() as conn:
        missing = pending(conn)
        full = None if missing else disk_full(conn)
    if missing:
        raise Problem(
            503,
            "Not ready",
            f"Migrations not applied yet: {', '.join(f'{v:04d}' for v in missing)}.",
            "migrations-pending",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if full is not None:
        raise Problem(
            503,
            "Not ready",
            f"The database's disk is full ({full}): uploads are refused (507) and runners wait "
            "until space is freed; reads still work.",
            "storage-full",
            {"Retry-After": str(DISK_FULL_RETRY_AFTER_SECONDS)},
            reason=full,
        )
    return jsonify(status="ready")


def disk_full(conn: psycopg.Connection) -> str | None:
    """Why the database cannot write a temporary file now (the error's first line), or None."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('work_mem', %s, true)", (PROBE_WORK_MEM,))
            conn.execute(q("batch_inputs_disk_probe")).fetchone()
    except psycopg.Error as exc:
        if not is_disk_full(exc):
            raise
        return public_reason(exc)  # anyone may read /readyz
    return None
