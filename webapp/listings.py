"""The lists the service serves, and their JSON views: a batch's results and set-aside rows, the batches.

Each list is a :class:`~webapp.pagination.Listing` over a reading function of
:mod:`core.batches`; the pages (:mod:`webapp.pages`) read the same listings
through :func:`results_page` and :func:`batches_page`, so a cursor from a page
link works in the API and the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from flask import Blueprint, Response, redirect, request, url_for

from core import batches
from core.batches import (
    PUBLIC_ID_PATTERN,
    SENTIMENTS,
    STATUSES,
    Batch,
    Result,
    RowError,
    feed,
    labels,
    ordering,
)
from core.clients import NAME_PATTERN, require_admin
from webapp.db import caller, connection, settings, signing_key
from webapp.negotiation import negotiated, wants_html
from webapp.page_weights import error_weight, json_length, result_weight
from webapp.pagination import (
    MAX_ROW_NUMBER,
    NOT_YET,
    PAST_THE_END,
    Listing,
    Page,
    bad_parameter,
    choice,
    page_response,
    parse_page_request,
    read_page,
)
from webapp.problems import Problem
from webapp.replica import read_results

bp = Blueprint("listings", __name__)


def _row_position(value: Any) -> bool:
    """A row or error number: a PostgreSQL integer, 0 before the first row."""
    return type(value) is int and 0 <= value <= MAX_ROW_NUMBER


def _batch_position(value: Any) -> bool:
    """[created_at as ISO 8601, public_id]: a time PostgreSQL reads and a batch id."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        return False
    try:
        datetime.fromisoformat(value[0])
    except ValueError:
        return False
    return isinstance(value[1], str) and PUBLIC_ID_PATTERN.fullmatch(value[1]) is not None


def _fetch_results(
    conn: psycopg.Connection, batch: Batch, after: Any, before: Any, limit: int, filters: dict
):
    sentiment = filters.get("sentiment")
    return batches.results(conn, batch, sentiment=sentiment, after=after or 0, before=before, limit=limit)


def _fetch_errors(conn: psycopg.Connection, batch: Batch, after: Any, before: Any, limit: int, filters: dict):
    return batches.row_errors(conn, batch, after=after or 0, limit=limit)


def _fetch_batches(conn: psycopg.Connection, _: None, after: Any, before: Any, limit: int, filters: dict):
    start = tuple(after) if after else batches.NEWEST
    return batches.list_batches(
        conn,
        status=filters.get("status"),
        client=filters.get("client"),
        metadata=_labels_of(filters),
        before=start,
        limit=limit,
    )


def _is_label_filter(name: str) -> bool:
    return name.startswith("metadata[") and name.endswith("]")


def _labels_of(filters: Mapping[str, str]) -> dict[str, str]:
    """``{"metadata[k]": v}`` filters (query parameters) as the labels ``{k: v}`` a batch must carry."""
    return {name[len("metadata[") : -1]: value for name, value in filters.items() if _is_label_filter(name)}


def _numbered(
    name: str, fetch: Callable[..., list[Any]], number: Callable[[Any], int], **options: Any
) -> Listing[Any]:
    """A list numbered densely from 1 by its rows' own numbers (row or error number): that number is
    the position, so page P is the one index range after (P - 1) * per_page."""
    return Listing(name, fetch, number, _row_position, numbered=True, **options)


RESULTS: Listing[Result] = _numbered(
    "results",
    _fetch_results,
    lambda r: r.row_number,
    backward=True,
    weight=result_weight,
    largest_row=20_000,  # MAX_TEXT_CHARS; results_page uses the setting
)


def _locator(order: ordering.ResultOrder):  # type: ignore[no-untyped-def]
    """Page P of a list that is not numbered densely: from the nearest checkpoint (core.batches.ordering)."""

    def locate(conn: psycopg.Connection, batch: Batch, skip: int, filters: Mapping[str, str]) -> Any:
        position = ordering.locate(conn, batch, order, filters.get("sentiment"), skip)
        if position is ordering.END:
            return PAST_THE_END
        return NOT_YET if position is ordering.BUILDING else position

    return locate


def _ordered_fetch(order: ordering.ResultOrder):  # type: ignore[no-untyped-def]
    def fetch(conn: psycopg.Connection, batch: Batch, after: Any, before: Any, limit: int, filters: dict):
        return ordering.page(conn, batch, order, filters.get("sentiment"), after, limit)

    return fetch


# Rows of one sentiment are not numbered densely: page P starts from a checkpoint.
RESULTS_OF_ONE_SENTIMENT = replace(RESULTS, numbered=False, locate=_locator(ordering.FILE_ORDER))
#: ?order=compound (most negative first) and ?order=-compound (most positive first), with or
#: without a sentiment: forwards, by cursor or by page number.
RESULTS_IN_ORDER = {
    name: Listing(
        "results",
        _ordered_fetch(order),
        order.position,
        order.valid_position,
        locate=_locator(order),
        weight=result_weight,
        largest_row=20_000,
    )
    for name, order in ordering.ORDERS.items()
    if order is not ordering.FILE_ORDER
}
ERRORS: Listing[RowError] = _numbered(
    "errors", _fetch_errors, lambda e: e.error_number, ignores=("before",), weight=error_weight
)


def _batches_scope(filters: Mapping[str, str]) -> str:
    """``batches:<status>``, then any other filters (client, labels) as sorted JSON, which no value
    can spell another way; a list filtered by status alone keeps the short scope its cursors carry."""
    others = sorted((name, value) for name, value in filters.items() if name != "status")
    return f"batches:{filters.get('status', '')}" + (json.dumps(others) if others else "")


BATCHES: Listing[Batch] = Listing(
    "batches",
    _fetch_batches,
    lambda b: [b.created_at.isoformat(), b.public_id],
    _batch_position,
    ignores=("page", "before"),
    scope_of=_batches_scope,
    weight=lambda b: json_length(b.source_filename),
)


def results_page(conn: psycopg.Connection, batch: Batch, args: Mapping[str, str]) -> Page[Result]:
    """The page of results ``args`` ask for (400 if they are bad), read from the replica when it
    can serve it (webapp.replica), else on ``conn``. A batch not completed (processing, or
    cancelled with rows scored) pages in file order only: the rows scored so far, gaps and all
    (chunks commit out of order); the other orders and the sentiment filter wait for it (409)."""
    sentiment = choice(args, "sentiment", SENTIMENTS)
    order = choice(args, "order", tuple(ordering.ORDERS))
    filters = {"sentiment": sentiment} if sentiment else {}
    if order in RESULTS_IN_ORDER:
        listing = RESULTS_IN_ORDER[order]
        filters["order"] = order
    else:
        listing = RESULTS_OF_ONE_SENTIMENT if sentiment else RESULTS
    listing = replace(listing, largest_row=settings().max_text_chars + 1_000)
    key = signing_key(conn)
    page_request = parse_page_request(args, listing, batch.public_id, filters, key)
    if not batch.has_results and (sentiment or order in RESULTS_IN_ORDER):
        meanwhile = " File-order pages and the events feed have the rows scored so far."
        batches.require_results(batch, "Sorted and filtered results are", meanwhile)
    keyed = ordering.ORDERS[order or "row"].uses_keys(sentiment)
    # The batch's sort keys, a step at a time, on the primary: the step commits with this request
    # (a 503 page-not-ready until they are all written).
    if keyed and not batches.write_keys(conn, batch):
        return Page(listing, [], page_request, dict(filters), None, None, not_yet=True)

    def read(reading: psycopg.Connection) -> Page[Result]:
        if keyed:  # a replica may not have replayed them yet: the primary then reads
            batches.require_keys(reading, batch)
        growing = not batch.finished  # the last page keeps a cursor to ask again from
        owner = batch.public_id
        return read_page(reading, listing, batch, owner, page_request, filters, key, growing=growing)

    # Page P of a list that locates it may write the list's checkpoints: the primary's business.
    return read_results(batch, conn, read, writes=page_request.skip > 0)


def not_yet_problem() -> Problem:
    """503 for a page whose checkpoints are still being written (core.batches.ordering.SCAN_ROWS)."""
    return Problem(
        503,
        "Page not ready yet",
        "This page is deeper than the list's checkpoints so far; they grow with each request. Retry.",
        "page-not-ready",
        {"Retry-After": "1"},
    )


def _client_filter(args: Mapping[str, str]) -> str | None:
    """``client``: whose batches to list; an admin may name anyone, a client only itself."""
    name = args.get("client")
    if name is None:
        return None
    if not NAME_PATTERN.fullmatch(name):
        raise bad_parameter(f"client must be an API key's name, got {name!r}.")
    if name != caller().client:
        require_admin(caller(), "Only an admin key can list another client's batches.")
    return name


def batches_page(args: Mapping[str, str]) -> Page[Batch]:
    """The page of batches ``args`` ask for: newest first, ``status``, ``client`` and ``metadata[key]``
    (each a label the batch must carry) to filter. Which
    batches the caller may see at all is row-level security's business (webapp.db)."""
    status = choice(args, "status", STATUSES)
    client = _client_filter(args)
    filters = {"status": status} if status else {}
    if client:
        filters["client"] = client
    wanted = _labels_of(args)
    labels.check_pairs(wanted, "The metadata[...] filters")
    filters.update({f"metadata[{name}]": value for name, value in wanted.items()})
    with connection() as conn:
        key = signing_key(conn)
        page_request = parse_page_request(args, BATCHES, "batches", filters, key)
        return read_page(conn, BATCHES, None, "batches", page_request, filters, key)


@bp.get("/batch/<public_id>/results")
def get_results(public_id: str) -> Response:
    with connection() as conn:
        batch = batches.get(conn, public_id)
        page = results_page(conn, batch, request.args)
        complete = feed.complete(conn, batch)
    if page.not_yet:  # the checkpoints written so far are committed: the retry goes on from them
        raise not_yet_problem()
    sentiment = page.filters.get("sentiment")
    total = batch.sentiment_count(sentiment) if sentiment else batch.processed_count
    url = url_for("listings.get_results", public_id=public_id)
    return page_response(page, url, batch_id=public_id, complete=complete, total_results=total)


@bp.get("/batch/<public_id>/errors")
def get_errors(public_id: str) -> Response:
    """The set-aside rows as JSON pages; a browser is sent to their page (``/batch/<id>/set-aside``)."""
    with connection() as conn:
        batch = batches.get(conn, public_id)
        if wants_html():
            to = url_for("pages.set_aside", public_id=public_id, **request.args)
            return negotiated(redirect(to, 303))
        key = signing_key(conn)
        page_request = parse_page_request(request.args, ERRORS, public_id, {}, key)
        page = read_results(
            batch, conn, lambda reading: read_page(reading, ERRORS, batch, public_id, page_request, {}, key)
        )
    url = url_for("listings.get_errors", public_id=public_id)
    return negotiated(page_response(page, url, batch_id=public_id, total_errors=batch.invalid_count))


@bp.get("/batches")
def list_batches() -> Response:
    """Batches, newest first, ``?status=`` to filter, ``?after=<cursor>`` for the next page."""
    page = batches_page(request.args)
    return page_response(page, url_for("listings.list_batches"), status=None, client=None)
