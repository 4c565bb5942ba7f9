"""Keyset-paginated lists: a batch's results (optionally of one sentiment),
its set-aside rows, and the batches themselves.

Every page is one index range: results and errors on their primary keys
(``row_number > after``), results of one sentiment on
``batch_results_sentiment_idx``, batches on ``batches_created_at_idx``
(``(created_at, id) < cursor``). Never a skip-and-count of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request, url_for

from core.queries import q
from webapp.db import get_pool, signing_key
from webapp.lookup import iso, load_batch, require_results, settings
from webapp.pagination import (
    PageRequest,
    bad_parameter,
    decode_cursor,
    encode_cursor,
    parse_page_request,
    parse_per_page,
)

bp = Blueprint("listings", __name__)

SENTIMENTS = ("positive", "negative", "neutral")
BATCH_STATUSES = ("processing", "completed", "completed_with_errors", "cancelled")


@dataclass(frozen=True)
class Listing:
    """One kind of per-batch list: where it is served, how it is read and shown."""

    endpoint: str
    query: str
    name: str  # "results" or "errors": the body's list key, and what cursors are bound to
    total_name: str
    shape: Callable[[tuple], dict[str, Any]]


def _result(row: tuple) -> dict[str, Any]:
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


def _error(row: tuple) -> dict[str, Any]:
    error_number, line, client_id, reason, detail = row
    return {"error": error_number, "line": line, "id": client_id, "reason": reason, "detail": detail}


RESULTS = Listing("listings.get_results", "batch_results_page", "results", "total_results", _result)
RESULTS_BY_SENTIMENT = Listing(
    "listings.get_results", "batch_results_page_by_sentiment", "results", "total_results", _result
)
ERRORS = Listing("listings.get_errors", "batch_row_errors_page", "errors", "total_errors", _error)


def _page(
    listing: Listing,
    public_id: str,
    batch_id: int,
    page: PageRequest,
    key: str,
    total: int,
    cursor_scope: str,
    **filters: str,
) -> Response:
    """One page of a per-batch list, with next_cursor and a Link header."""
    with get_pool().connection() as conn:
        rows = conn.execute(
            q(listing.query),
            {"batch_id": batch_id, "after_row": page.after_row, "limit": page.per_page + 1, **filters},
        ).fetchall()
    has_more = len(rows) > page.per_page
    rows = rows[: page.per_page]
    next_cursor = encode_cursor(key, public_id, rows[-1][0], cursor_scope) if has_more else None
    response = jsonify(
        {
            "batch_id": public_id,
            "page": page.page,
            "per_page": page.per_page,
            **filters,
            listing.total_name: total,
            listing.name: [listing.shape(row) for row in rows],
            "next_cursor": next_cursor,
        }
    )
    if has_more:
        if page.page is not None and not filters:
            params = {"page": page.page + 1, "per_page": page.per_page}
        else:
            params = {"after": next_cursor, "per_page": page.per_page, **filters}
        next_url = url_for(listing.endpoint, public_id=public_id) + "?" + urlencode(params)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/batch/<public_id>/results")
def get_results(public_id: str) -> Response:
    batch = load_batch(public_id)
    key = signing_key(settings())
    sentiment = request.args.get("sentiment")
    if sentiment is None:
        page = parse_page_request(request.args, public_id, key, "results")
        require_results(batch)
        return _page(RESULTS, public_id, batch["id"], page, key, batch["processed_count"], "results")
    if sentiment not in SENTIMENTS:
        raise bad_parameter(f"sentiment must be one of {', '.join(SENTIMENTS)}, got {sentiment!r}.")
    scope = f"results:{sentiment}"
    page = parse_page_request(request.args, public_id, key, scope)
    if page.page is not None and page.page > 1:
        # Rows of one sentiment are not numbered densely, so page N is not an index range.
        raise bad_parameter("With sentiment=, start at page 1 and follow next_cursor (after=) from there.")
    require_results(batch)
    return _page(
        RESULTS_BY_SENTIMENT,
        public_id,
        batch["id"],
        page,
        key,
        batch[f"{sentiment}_count"],
        scope,
        sentiment=sentiment,
    )


@dataclass(frozen=True)
class ResultsWindow:
    """A page of results read forwards or backwards, with where the pages beside it start."""

    results: list[dict[str, Any]]
    first_row: int | None  # the Previous link reads before this row; None on the first page
    last_row: int | None  # the Next link reads after this row; None on the last page


def results_window(
    batch_id: int, per_page: int, sentiment: str | None, after_row: int = 0, before_row: int | None = None
) -> ResultsWindow:
    """Results after ``after_row``, or (with ``before_row``) the page that ends just before it.

    Either way one index range (the primary key, or batch_results_sentiment_idx
    with ``sentiment``), so a page deep in a big batch costs what the first does.
    """
    name = "batch_results_page_by_sentiment" if sentiment else "batch_results_page"
    params: dict[str, Any] = {"batch_id": batch_id, "limit": per_page + 1, "sentiment": sentiment}
    with get_pool().connection() as conn:
        if before_row is None:
            rows = conn.execute(q(name), {**params, "after_row": after_row}).fetchall()
            more_after, more_before = len(rows) > per_page, after_row > 0
            rows = rows[:per_page]
        else:
            rows = conn.execute(q(f"{name}_before"), {**params, "before_row": before_row}).fetchall()
            more_after, more_before = True, len(rows) > per_page
            rows = rows[:per_page][::-1]
    return ResultsWindow(
        [_result(row) for row in rows],
        rows[0][0] if rows and more_before else None,
        rows[-1][0] if rows and more_after else None,
    )


@bp.get("/batch/<public_id>/errors")
def get_errors(public_id: str) -> Response:
    batch = load_batch(public_id)
    key = signing_key(settings())
    page = parse_page_request(request.args, public_id, key, "errors")
    return _page(ERRORS, public_id, batch["id"], page, key, batch["invalid_count"], "errors")


@dataclass(frozen=True)
class BatchesPage:
    """One keyset page of batches, newest first, as both the JSON list and the home page show it."""

    per_page: int
    status: str | None
    batches: list[dict[str, Any]]
    next_cursor: str | None


def batches_page(args: Mapping[str, str]) -> BatchesPage:
    """Read ``per_page``, ``status`` and ``after`` (400 if bad) and fetch that page of batches."""
    key = signing_key(settings())
    per_page = parse_per_page(args)
    status = args.get("status")
    if status is not None and status not in BATCH_STATUSES:
        raise bad_parameter(f"status must be one of {', '.join(BATCH_STATUSES)}, got {status!r}.")
    scope = f"batches:{status or ''}"
    before_created, before_id = "infinity", 2**63 - 1
    if "after" in args:
        position = decode_cursor(key, args["after"], "batches", scope)
        if not (isinstance(position, list) and len(position) == 2 and isinstance(position[1], int)):
            raise bad_parameter("The cursor in 'after' is not valid; use next_cursor as given.")
        before_created, before_id = position
    with get_pool().connection() as conn:
        rows = conn.execute(
            q("batches_list"),
            {
                "status": status,
                "before_created": before_created,
                "before_id": before_id,
                "limit": per_page + 1,
            },
        ).fetchall()
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    next_cursor = None
    if has_more:
        last_created: datetime = rows[-1][7]
        next_cursor = encode_cursor(key, "batches", [last_created.isoformat(), rows[-1][0]], scope)
    batches = [
        {
            "batch_id": public_id,
            "status": state,
            "total_count": total,
            "processed_count": processed,
            "invalid_count": invalid,
            "failed_count": failed,
            "created_at": iso(created),
            "completed_at": iso(completed),
            "filename": filename,
        }
        for _, public_id, state, total, processed, invalid, failed, created, completed, filename in rows
    ]
    return BatchesPage(per_page, status, batches, next_cursor)


@bp.get("/batches")
def list_batches() -> Response:
    """Batches, newest first, ``?status=`` to filter, ``?after=<cursor>`` for the next page."""
    page = batches_page(request.args)
    response = jsonify(
        {
            "per_page": page.per_page,
            "status": page.status,
            "batches": page.batches,
            "next_cursor": page.next_cursor,
        }
    )
    if page.next_cursor:
        params = {"after": page.next_cursor, "per_page": page.per_page}
        if page.status:
            params["status"] = page.status
        response.headers["Link"] = f'<{url_for("listings.list_batches")}?{urlencode(params)}>; rel="next"'
    return response
