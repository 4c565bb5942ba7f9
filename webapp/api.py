"""The JSON API for one batch's life: upload, status, cancel, delete."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, request, url_for
from werkzeug.http import parse_options_header

from core.queries import q
from core.settings import Settings
from webapp import pages
from webapp.csv_upload import UploadOptions, check_encoding, csv_rows
from webapp.db import get_pool
from webapp.ingest import ingest_upload
from webapp.lookup import iso, load_batch, not_found, settings
from webapp.metrics import ROWS_INGESTED, UPLOADS
from webapp.negotiation import negotiated, wants_html
from webapp.problems import Problem
from webapp.progress import Progress
from webapp.request_body import bad_request, drain, open_multipart, read_body, too_large

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

CSV_MEDIA_TYPES = {"text/csv", "application/csv", "text/plain"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise Problem(
        400, "Invalid query parameter", f"{name} must be true or false, got {value!r}.", "invalid-parameter"
    )


def _upload_options(config: Settings, fields: Mapping[str, str], part_content_type: str) -> UploadOptions:
    """Encoding and strictness from the query string, the form, or the Content-Type charset."""
    charset = parse_options_header(part_content_type)[1].get("charset")
    encoding = request.args.get("encoding") or fields.get("encoding") or charset or "utf-8"
    strict = _flag(request.args.get("strict", fields.get("strict")), "strict")
    # Kept on g so that a refused browser upload shows the form with the same choices.
    g.upload_options = UploadOptions(
        encoding=check_encoding(encoding),
        strict=strict,
        max_rows=config.max_rows,
        max_text_chars=config.max_text_chars,
    )
    return g.upload_options


@bp.post("/batch/upload")
def upload_batch() -> Response:
    """202 with the new batch as JSON; a browser's form gets 303 to the batch's page instead,
    or the form again with the problem (same status code) when the file is refused."""
    browser = wants_html()
    try:
        response = _upload()
    except Problem as problem:
        UPLOADS.labels("rejected").inc()
        if browser:
            limit = settings().max_upload_bytes
            if (request.content_length or 0) <= limit:  # an oversized body is not worth reading
                drain(request.stream, limit)
            return pages.upload_form(problem)
        raise
    UPLOADS.labels("accepted").inc()
    if browser:
        return negotiated(redirect(response.headers["Location"], 303))
    return negotiated(response)


def _upload() -> Response:
    config = settings()
    if request.content_length is not None and request.content_length > config.max_upload_bytes:
        raise too_large(config.max_upload_bytes)
    content_type = request.headers.get("Content-Type", "")
    media_type = parse_options_header(content_type)[0].lower()
    pieces = read_body(request.stream, config.max_upload_bytes)
    if media_type == "multipart/form-data":
        upload = open_multipart(pieces, content_type)
        options = _upload_options(config, upload.fields, upload.headers.get("Content-Type", ""))
        filename, data = upload.filename, upload.data
    elif media_type in CSV_MEDIA_TYPES:
        options = _upload_options(config, {}, content_type)
        filename, data = None, pieces
    else:
        received = media_type or "no Content-Type"
        raise bad_request(
            "unsupported-media-type",
            f"Send the CSV as multipart/form-data (field 'file') or as text/csv, not {received}.",
            415,
            "Unsupported media type",
        )
    created = ingest_upload(
        get_pool(), csv_rows(data, options), chunk_size=config.chunk_size, filename=filename
    )
    ROWS_INGESTED.inc(created.total_count)
    response = jsonify(
        batch_id=created.public_id,
        status="processing",
        total_count=created.total_count,
        processed_count=0,
        invalid_count=created.invalid_count,
    )
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_batch", public_id=created.public_id)
    return response


@bp.get("/batch/<public_id>")
def get_batch(public_id: str) -> Response:
    """The batch as JSON; for a browser, the batch's page (progress, chart, results)."""
    batch = load_batch(public_id)
    if wants_html():
        return pages.batch_page(batch)
    body: dict[str, Any] = {
        "batch_id": batch["public_id"],
        "status": batch["status"],
        "total_count": batch["total_count"],
        "processed_count": batch["processed_count"],
        "invalid_count": batch["invalid_count"],
        "failed_count": batch["failed_count"],
        "progress_percent": Progress.of(batch).percent,
        "created_at": iso(batch["created_at"]),
        "started_at": iso(batch["started_at"]),
        "completed_at": iso(batch["completed_at"]),
        "filename": batch["source_filename"],
    }
    if batch["status"] != "processing":
        body["summary"] = {
            "positive": batch["positive_count"],
            "negative": batch["negative_count"],
            "neutral": batch["neutral_count"],
        }
    return negotiated(jsonify(body))


@bp.post("/batch/<public_id>/cancel")
def cancel_batch(public_id: str) -> Response:
    """Stop a processing batch: ready chunks and their staged rows go, chunks in hand finish."""
    batch = load_batch(public_id)
    if batch["status"] not in ("processing", "cancelled"):
        raise Problem(
            409,
            "Batch already finished",
            f"The batch is {batch['status']}; there is nothing to cancel.",
            "batch-finished",
            status_of_batch=batch["status"],
        )
    with get_pool().connection() as conn, conn.transaction():
        # Chunks first, the batch row last: the same lock order as the runners'
        # claim and finish, so cancel never deadlocks with them.
        conn.execute(q("chunks_delete_not_claimed"), {"batch_id": batch["id"]})
        conn.execute(q("batch_rows_delete_unclaimed"), {"batch_id": batch["id"]})
        conn.execute(q("batches_cancel"), {"batch_id": batch["id"]})
    log.info("batch %s cancelled", public_id)
    if wants_html():
        return redirect(url_for("api.get_batch", public_id=public_id), 303)
    return get_batch(public_id)


@bp.delete("/batch/<public_id>")
def delete_batch(public_id: str) -> Response:
    """Remove a finished batch and all its rows; a processing batch must be cancelled first."""
    batch = load_batch(public_id)
    with get_pool().connection() as conn, conn.transaction():
        status = conn.execute(q("batches_lock"), {"batch_id": batch["id"]}).fetchone()
        if status is None:
            raise not_found(public_id)
        in_hand = conn.execute(q("chunks_count_claimed"), {"batch_id": batch["id"]}).fetchone()[0]
        if status[0] == "processing" or in_hand:
            raise Problem(
                409,
                "Batch still processing",
                f"The batch is {status[0]} with {in_hand} chunk(s) in runners' hands; cancel it first "
                f"(POST /batch/{public_id}/cancel), then delete it once those finish.",
                "batch-processing",
                status_of_batch=status[0],
            )
        conn.execute(q("batches_delete_with_rows"), {"batch_ids": [batch["id"]]})
    log.info("batch %s deleted", public_id)
    return Response(status=204)
