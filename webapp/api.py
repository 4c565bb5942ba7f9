"""The JSON API: upload a CSV, watch a batch, page through its results and set-aside rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from werkzeug.http import parse_options_header

from jobrunner.queries import q
from jobrunner.settings import Settings
from webapp.csv_upload import UploadOptions, check_encoding, csv_rows
from webapp.db import get_pool, signing_key
from webapp.ingest import ingest_upload
from webapp.pagination import PageRequest, encode_cursor, parse_page_request
from webapp.problems import Problem
from webapp.request_body import bad_request, open_multipart, read_body, too_large

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

CSV_MEDIA_TYPES = {"text/csv", "application/csv", "text/plain"}
FINISHED_WITH_RESULTS = {"completed", "completed_with_errors"}
_PUBLIC_ID_LENGTH = len("batch-") + 32
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def _upload_options(settings: Settings, fields: Mapping[str, str], part_content_type: str) -> UploadOptions:
    """Encoding and strictness from the query string, the form, or the Content-Type charset."""
    charset = parse_options_header(part_content_type)[1].get("charset")
    encoding = request.args.get("encoding") or fields.get("encoding") or charset or "utf-8"
    strict = _flag(request.args.get("strict", fields.get("strict")), "strict")
    return UploadOptions(
        encoding=check_encoding(encoding),
        strict=strict,
        max_rows=settings.max_rows,
        max_text_chars=settings.max_text_chars,
    )


@bp.post("/batch/upload")
def upload_batch() -> Response:
    settings = _settings()
    if request.content_length is not None and request.content_length > settings.max_upload_bytes:
        raise too_large(settings.max_upload_bytes)
    content_type = request.headers.get("Content-Type", "")
    media_type = parse_options_header(content_type)[0].lower()
    pieces = read_body(request.stream, settings.max_upload_bytes)
    if media_type == "multipart/form-data":
        upload = open_multipart(pieces, content_type)
        options = _upload_options(settings, upload.fields, upload.headers.get("Content-Type", ""))
        filename, data = upload.filename, upload.data
    elif media_type in CSV_MEDIA_TYPES:
        options = _upload_options(settings, {}, content_type)
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
        get_pool(), csv_rows(data, options), chunk_size=settings.chunk_size, filename=filename
    )
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
    batch = _load_batch(public_id)
    total, processed = batch["total_count"], batch["processed_count"]
    invalid, failed = batch["invalid_count"], batch["failed_count"]
    body: dict[str, Any] = {
        "batch_id": batch["public_id"],
        "status": batch["status"],
        "total_count": total,
        "processed_count": processed,
        "invalid_count": invalid,
        "failed_count": failed,
        # Set-aside and failed rows are done too: the bar reaches 100 when the batch completes.
        "progress_percent": round(100.0 * (processed + invalid + failed) / total, 1),
        "created_at": _iso(batch["created_at"]),
        "started_at": _iso(batch["started_at"]),
        "completed_at": _iso(batch["completed_at"]),
    }
    if batch["status"] != "processing":
        body["summary"] = {
            "positive": batch["positive_count"],
            "negative": batch["negative_count"],
            "neutral": batch["neutral_count"],
        }
    return jsonify(body)


def _keyset_page(
    endpoint: str,
    public_id: str,
    batch_id: int,
    page: PageRequest,
    query: str,
    key: str,
    shape: Callable[[tuple], dict[str, Any]],
    list_name: str,
    total_name: str,
    total: int,
) -> Response:
    """One page of a keyset-paginated list, with next_cursor and a Link header."""
    with get_pool().connection() as conn:
        rows = conn.execute(
            q(query), {"batch_id": batch_id, "after_row": page.after_row, "limit": page.per_page + 1}
        ).fetchall()
    has_more = len(rows) > page.per_page
    rows = rows[: page.per_page]
    next_cursor = encode_cursor(key, public_id, rows[-1][0], list_name) if has_more else None
    response = jsonify(
        {
            "batch_id": public_id,
            "page": page.page,
            "per_page": page.per_page,
            total_name: total,
            list_name: [shape(row) for row in rows],
            "next_cursor": next_cursor,
        }
    )
    if has_more:
        if page.page is not None:
            params = {"page": page.page + 1, "per_page": page.per_page}
        else:
            params = {"after": next_cursor, "per_page": page.per_page}
        next_url = url_for(endpoint, public_id=public_id) + "?" + urlencode(params)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/batch/<public_id>/results")
def get_results(public_id: str) -> Response:
    batch = _load_batch(public_id)
    key = signing_key(_settings())
    page = parse_page_request(request.args, public_id, key, "results")
    if batch["status"] not in FINISHED_WITH_RESULTS:
        raise Problem(
            409,
            "Batch not completed",
            f"Results are available once the batch is completed; it is {batch['status']} "
            f"({batch['processed_count']} of {batch['total_count'] - batch['invalid_count']} rows scored).",
            "batch-not-completed",
            status_of_batch=batch["status"],
        )

    def shape(row: tuple) -> dict[str, Any]:
        row_number, line, client_id, text, sentiment, score, compound, error = row
        item = {
            "row": row_number,
            "line": line,
            "id": client_id,
            "text": text,
            "sentiment": sentiment,
            "score": score,
            "compound": compound,
        }
        if error is not None:
            item["error"] = error
        return item

    return _keyset_page(
        "api.get_results",
        public_id,
        batch["id"],
        page,
        "batch_results_page",
        key,
        shape,
        "results",
        "total_results",
        batch["processed_count"],
    )


@bp.get("/batch/<public_id>/errors")
def get_errors(public_id: str) -> Response:
    batch = _load_batch(public_id)
    key = signing_key(_settings())
    page = parse_page_request(request.args, public_id, key, "errors")

    def shape(row: tuple) -> dict[str, Any]:
        error_number, line, client_id, reason, detail = row
        return {"error": error_number, "line": line, "id": client_id, "reason": reason, "detail": detail}

    return _keyset_page(
        "api.get_errors",
        public_id,
        batch["id"],
        page,
        "batch_row_errors_page",
        key,
        shape,
        "errors",
        "total_errors",
        batch["invalid_count"],
    )


@bp.post("/batch/<public_id>/cancel")
def cancel_batch(public_id: str) -> Response:
    """Stop a processing batch: ready chunks and their staged rows go, chunks in hand finish."""
    batch = _load_batch(public_id)
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
    return get_batch(public_id)


@bp.delete("/batch/<public_id>")
def delete_batch(public_id: str) -> Response:
    """Remove a finished batch and all its rows; a processing batch must be cancelled first."""
    batch = _load_batch(public_id)
    with get_pool().connection() as conn, conn.transaction():
        status = conn.execute(q("batches_lock"), {"batch_id": batch["id"]}).fetchone()
        if status is None:
            raise _not_found(public_id)
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
        conn.execute(q("batches_delete_with_rows"), {"batch_id": batch["id"]})
    log.info("batch %s deleted", public_id)
    return Response(status=204)
