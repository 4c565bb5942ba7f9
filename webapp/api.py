"""The JSON API: upload a CSV, watch a batch, page through its results."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.http import parse_options_header

from jobrunner.queries import q
from jobrunner.settings import Settings
from webapp.csv_upload import CSV_MEDIA_TYPES, csv_rows, multipart_file, read_body
from webapp.db import get_pool, signing_key
from webapp.ingest import ingest_upload
from webapp.pagination import encode_cursor, parse_page_request
from webapp.problems import Problem

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

_PUBLIC_ID_LENGTH = len("batch-") + 32


def _settings() -> Settings:
    return current_app.extensions["settings"]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _not_found(public_id: str) -> Problem:
    return Problem(404, "Batch not found", f"There is no batch {public_id!r}.", "batch-not-found")


def _load_batch(public_id: str) -> dict[str, Any]:
    # Ids have a fixed shape: anything else cannot exist, so skip the query.
    if len(public_id) != _PUBLIC_ID_LENGTH or not public_id.startswith("batch-"):
        raise _not_found(public_id)
    with get_pool().connection() as conn:
        cur = conn.execute(q("batches_get"), {"public_id": public_id})
        row = cur.fetchone()
        if row is None:
            raise _not_found(public_id)
        return dict(zip([c.name for c in cur.description], row, strict=True))


@bp.post("/batch/upload")
def upload_batch():  # type: ignore[no-untyped-def]
    settings = _settings()
    content_type = request.headers.get("Content-Type", "")
    media_type = parse_options_header(content_type)[0].lower()
    pieces = read_body(request.stream, settings.max_upload_bytes)
    if media_type == "multipart/form-data":
        filename, data = multipart_file(pieces, content_type)
    elif media_type in CSV_MEDIA_TYPES:
        filename, data = None, pieces
    else:
        received = media_type or "no Content-Type"
        raise Problem(
            415,
            "Unsupported media type",
            f"Send the CSV as multipart/form-data (field 'file') or as text/csv, not {received}.",
            "unsupported-media-type",
        )
    created = ingest_upload(get_pool(), csv_rows(data), chunk_size=settings.chunk_size, filename=filename)
    location = url_for("api.get_batch", public_id=created.public_id)
    response = jsonify(
        batch_id=created.public_id,
        status="processing",
        total_count=created.total_count,
        processed_count=0,
    )
    response.status_code = 202
    response.headers["Location"] = location
    return response


@bp.get("/batch/<public_id>")
def get_batch(public_id: str):  # type: ignore[no-untyped-def]
    batch = _load_batch(public_id)
    total, processed = batch["total_count"], batch["processed_count"]
    body: dict[str, Any] = {
        "batch_id": batch["public_id"],
        "status": batch["status"],
        "total_count": total,
        "processed_count": processed,
        "progress_percent": round(100.0 * processed / total, 1) if total else 100.0,
        "created_at": _iso(batch["created_at"]),
        "started_at": _iso(batch["started_at"]),
        "completed_at": _iso(batch["completed_at"]),
    }
    if batch["status"] == "completed":
        body["summary"] = {
            "positive": batch["positive_count"],
            "negative": batch["negative_count"],
            "neutral": batch["neutral_count"],
        }
    return jsonify(body)


@bp.get("/batch/<public_id>/results")
def get_results(public_id: str):  # type: ignore[no-untyped-def]
    batch = _load_batch(public_id)
    key = signing_key(_settings())
    page = parse_page_request(request.args, public_id, key)
    if batch["status"] != "completed":
        raise Problem(
            409,
            "Batch not completed",
            f"Results are available once the batch is completed; it is {batch['status']} "
            f"({batch['processed_count']} of {batch['total_count']} rows scored).",
            "batch-not-completed",
            status_of_batch=batch["status"],
        )
    with get_pool().connection() as conn:
        rows = conn.execute(
            q("batch_results_page"),
            {"batch_id": batch["id"], "after_row": page.after_row, "limit": page.per_page + 1},
        ).fetchall()
    has_more = len(rows) > page.per_page
    rows = rows[: page.per_page]
    next_cursor = encode_cursor(key, public_id, rows[-1][0]) if has_more else None
    body: dict[str, Any] = {
        "batch_id": public_id,
        "page": page.page,
        "per_page": page.per_page,
        "total_results": batch["processed_count"],
        "results": [
            {
                "row": row_number,
                "id": client_id,
                "text": text,
                "sentiment": sentiment,
                "score": score,
                "compound": compound,
            }
            for row_number, client_id, text, sentiment, score, compound in rows
        ],
        "next_cursor": next_cursor,
    }
    response = jsonify(body)
    if has_more:
        if page.page is not None:
            query = {"page": page.page + 1, "per_page": page.per_page}
        else:
            query = {"after": next_cursor, "per_page": page.per_page}
        next_url = url_for("api.get_results", public_id=public_id) + "?" + urlencode(query)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response
