"""The JSON API for one batch's life: upload, status, cancel, delete.

Each view parses the request, calls :mod:`core.batches`, and renders the
answer; a browser gets a page or a redirect instead (content negotiation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from flask import Blueprint, Response, g, jsonify, redirect, request, url_for
from werkzeug.http import parse_options_header

from core import batches
from core.batches import idempotency, labels, summaries
from core.batches.quota import Quotas
from core.clients import LOCAL_USER
from core.disk_full import is_disk_full
from core.errors import ServiceError
from core.setting_values import parse_bool
from core.settings import Settings
from webapp import pages, webhooks
from webapp.db import caller, connection, settings, upload_connection
from webapp.metrics import ROWS_INGESTED, UPLOADS
from webapp.negotiation import negotiated, wants_html
from webapp.pagination import bad_parameter
from webapp.problems import Problem, problem_of, storage_full
from webapp.server import admission
from webapp.upload.compression import content_decoded, gunzipped
from webapp.upload.csv_reader import UploadOptions, check_encoding, parser_for
from webapp.upload.file_rows import JSONL_MEDIA_TYPES, XLSX_MEDIA_TYPE, UploadRows, declared_format
from webapp.upload.request_body import (
    BLANK_MEANS_UNSET,
    bad_request,
    drain,
    open_multipart,
    read_body,
    too_large,
)

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

CSV_MEDIA_TYPES = {"text/csv", "application/csv", "text/plain"}


def _flag(value: str | None, name: str) -> bool:
    """A true/false parameter, read as settings are (core.setting_values.parse_bool); absent is false."""
    if value is None:
        return False
    try:
        return parse_bool(value)
    except ValueError:
        raise bad_parameter(f"{name} must be true or false, got {value!r}.") from None


def _option(fields: Mapping[str, str], name: str) -> str | None:
    """An upload option, from the query string or a form field before the file; given both ways
    with different values, or twice in the query string, a 400 (neither silently wins; a form
    field given twice is refused as the form is read, webapp.upload.request_body)."""
    if len(request.args.getlist(name)) > 1:
        raise bad_parameter(f"{name} is given more than once in the query string; give it once.")
    asked, filled = request.args.get(name), fields.get(name)
    if filled is not None and name in BLANK_MEANS_UNSET and not filled.strip():
        filled = None
    if asked is not None and filled is not None and asked != filled:
        raise bad_parameter(
            f"{name} is given both in the query string ({asked!r}) and as a form field ({filled!r}); "
            "give it once."
        )
    return asked if asked is not None else filled


def _upload_options(config: Settings, fields: Mapping[str, str], part_content_type: str) -> UploadOptions:
    """Encoding and strictness from the query string, the form, or the Content-Type charset."""
    charset = parse_options_header(part_content_type)[1].get("charset")
    encoding = _option(fields, "encoding") or charset or "utf-8"
    strict = _flag(_option(fields, "strict"), "strict")
    text_column, id_column = _column(fields, "text_column"), _column(fields, "id_column")
    if text_column is not None and id_column is not None and text_column.lower() == id_column.lower():
        raise bad_parameter(f"text_column and id_column name the same column ({text_column!r}).")
    # Kept on g so that a refused browser upload shows the form with the same choices.
    g.upload_options = UploadOptions(
        encoding=check_encoding(encoding),
        strict=strict,
        max_rows=config.max_rows,
        max_text_chars=config.max_text_chars,
        max_id_chars=config.max_id_chars,
        text_column=text_column,
        id_column=id_column,
    )
    return g.upload_options


#: The longest column name text_column or id_column may give.
MAX_COLUMN_NAME_CHARS = 255


def _column(fields: Mapping[str, str], name: str) -> str | None:
    """A column's name (text_column, id_column), trimmed; absent is None, empty a 400."""
    value = _option(fields, name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_COLUMN_NAME_CHARS or "\x00" in value:
        raise bad_parameter(f"{name} must name a column (1 to {MAX_COLUMN_NAME_CHARS} characters).")
    return value


@bp.post("/batch/upload")
def upload_batch() -> Response:
    """202 with the new batch as JSON; a browser's form gets 303 to the batch's page instead,
    or the form again with the problem (same status code) when the file is refused."""
    browser = wants_html()
    try:
        release = admission.take("uploads")  # 503 at once past MAX_UPLOADS; nothing is read
    except Problem as problem:
        UPLOADS.labels("rejected").inc()
        if browser:
            return pages.upload_form(problem)
        raise
    try:
        try:
            response = _upload()
        except ServiceError as exc:  # refused by core (labels, quota, Idempotency-Key): the same form
            raise problem_of(exc) from exc
        except psycopg.Error as exc:  # a full disk refuses the file like any other refusal
            if is_disk_full(exc):
                raise storage_full(exc) from exc
            raise
    except Problem as problem:
        UPLOADS.labels("rejected").inc()
        if browser:
            limit = settings().max_upload_bytes
            if (request.content_length or 0) <= limit:  # an oversized body is not worth reading
                drain(request.stream, limit)  # a few MiB and seconds at most, inside the upload slot
            return pages.upload_form(problem)
        raise
    finally:
        release()
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
    pieces = read_body(request.stream, config.max_upload_bytes, request.content_length)
    pieces = content_decoded(pieces, request.headers.get("Content-Encoding"), config.max_upload_bytes)
    if media_type == "multipart/form-data":
        upload = open_multipart(pieces, content_type)
        options = _upload_options(config, upload.fields, upload.headers.get("Content-Type", ""))
        filename, data = upload.filename, upload.data
        file_type = parse_options_header(upload.headers.get("Content-Type", ""))[0].lower()
    elif media_type in CSV_MEDIA_TYPES or media_type in JSONL_MEDIA_TYPES or media_type == XLSX_MEDIA_TYPE:
        options = _upload_options(config, {}, content_type)
        filename, data, file_type = None, pieces, media_type
    else:
        received = media_type or "no Content-Type"
        raise bad_request(
            "unsupported-media-type",
            "Send the file as multipart/form-data (field 'file'), or as text/csv, "
            f"application/x-ndjson (JSON Lines) or {XLSX_MEDIA_TYPE}, not {received}.",
            415,
            "Unsupported media type",
        )
    fields = upload.fields if media_type == "multipart/form-data" else {}
    shape = _batch_shape(config, fields)
    sheet = _option(fields, "sheet")
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = idempotency.check_key(key)
    # What the client asked for: expires_after as sent, not as RESULTS_TTL (which may change between
    # two tries) filled it in.
    asked = {**shape, "expires_after": _option(fields, "expires_after")}
    reading: dict[str, object] = {"strict": options.strict, "encoding": options.encoding}
    if sheet is not None:  # only then, so a CSV upload's hash is what it has always been
        reading["sheet"] = sheet
    # The columns only when named, so that an upload without them hashes as it always has.
    columns = {"text_column": options.text_column, "id_column": options.id_column}
    asked.update({name: value for name, value in columns.items() if value is not None})
    body_hash = idempotency.BodyHash({**asked, **reading})
    data = body_hash.through(data)
    client = caller().client
    batch, replayed = None, False
    if key is not None:  # a replay is found first: it takes no batch id and makes no partition
        with connection() as conn:
            earlier = idempotency.earlier(conn, client, key, config.idempotency_ttl_seconds)
        if earlier is not None:
            idempotency.check_replay(earlier, data, body_hash, key)
            with connection() as conn:
                batch, replayed = batches.get(conn, earlier.public_id), True
    if batch is None:
        with upload_connection() as (conn, batch_id):
            # Its first upload may have committed since that look, or still be in flight.
            earlier = (
                None
                if key is None
                else idempotency.reserve(conn, client, key, config.idempotency_ttl_seconds)
            )
            if earlier is not None:
                idempotency.check_replay(earlier, data, body_hash, key)
                batch, replayed = batches.get(conn, earlier.public_id), True
            else:
                batch = batches.create(
                    conn,
                    UploadRows(
                        gunzipped(data, config.max_upload_bytes),
                        options,
                        parser_for(config.upload_csv_parser),
                        declared=declared_format(filename, file_type),
                        sheet=sheet,
                        max_bytes=config.max_upload_bytes,
                    ),
                    batch_id=batch_id,
                    chunk_size=config.chunk_size,
                    filename=filename,
                    client=client,
                    quotas=Quotas(
                        queued_rows=config.quota_queued_rows,
                        batches=config.quota_batches,
                        stored_rows=config.quota_stored_rows,
                    ),
                    max_pending_webhooks=config.webhook_max_pending,
                    **shape,
                )
                if key is not None:
                    idempotency.record(conn, client, key, batch.id, body_hash.digest())
    if not replayed:
        ROWS_INGESTED.inc(batch.total_count)
    response = jsonify(batch.to_json())
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_batch", public_id=batch.public_id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _batch_shape(config: Settings, fields: Mapping[str, str]) -> dict[str, Any]:
    """What the upload says about the batch (query string or form fields before the file): its labels
    and its expiry, RESULTS_TTL (or its default) as it is now when it gives none."""
    expires_after = labels.parse_expires_after(
        _option(fields, "expires_after"), config.max_expires_after_seconds
    )
    if expires_after is None:
        expires_after = labels.default_expiry(config.results_ttl_seconds, caller() != LOCAL_USER)
    return {
        "metadata": labels.parse_metadata(_option(fields, "metadata")),
        "expires_after": expires_after,
        "callback_url": webhooks.callback_url_option(config, _option(fields, "callback_url")),
    }


@bp.get("/batch/<public_id>")
def get_batch(public_id: str) -> Response:
    """The batch as JSON; for a browser, the batch's page (progress, chart, results)."""
    with connection() as conn:
        batch = batches.get(conn, public_id)
        if wants_html():
            return pages.batch_page(conn, batch)
        scores = summaries.read(conn, batch)
    return negotiated(jsonify(batch.to_json(scores)))


@bp.post("/batch/<public_id>/cancel")
def cancel_batch(public_id: str) -> Response:
    """Stop a processing batch: ready chunks leave the queue, chunks in hand finish."""
    with connection() as conn:
        batch = batches.cancel(conn, public_id)
    if wants_html():
        return redirect(url_for("api.get_batch", public_id=public_id), 303)
    return negotiated(jsonify(batch.to_json()))


@bp.delete("/batch/<public_id>")
def delete_batch(public_id: str) -> Response:
    """Remove a finished batch and all its rows; a processing batch must be cancelled first."""
    with connection() as conn:
        batches.delete(conn, public_id)
    return Response(status=204)
