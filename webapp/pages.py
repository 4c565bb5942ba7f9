"""Server-rendered pages for people with a browser: upload, watch, read, download.

``GET /`` is the upload form and the recent batches. A browser's form POST to ``/batch/upload``
and its ``GET /batch/<id>`` reach the JSON views in :mod:`webapp.api`, which hand over to
:func:`upload_form` and :func:`batch_page` here (:mod:`webapp.negotiation`), so each URL serves
both. ``/batch/<id>/set-aside`` is the rows an upload set aside, a page at a time
(:func:`set_aside_page`, which the JSON list's URL can hand a browser over to as well).
Pages are autoescaped Jinja templates with small scripts under ``static/``: the form's
drag-and-drop, and a running batch's live view, which follows the batch's event stream
(``/batch/<id>/events``) and polls the JSON status where that stream is not to be had. Without
JavaScript the form still uploads and a running batch's page reloads itself every few seconds.
Every HTML answer carries a Content-Security-Policy that allows only this site's own scripts and
styles, so text from an uploaded file could not run even if escaping were ever missed.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
from flask import Blueprint, Flask, Response, g, make_response, render_template, request, url_for

from core import batches
from core.batches import SENTIMENTS, Batch, summaries
from core.errors import Conflict
from webapp.db import connection, settings, signing_key
from webapp.groups import page_groups
from webapp.listings import ERRORS, batches_page, results_page
from webapp.negotiation import negotiated
from webapp.pagination import DEFAULT_PER_PAGE, MAX_ROW_NUMBER, Page, parse_page_request, read_page
from webapp.problems import Problem
from webapp.replica import read_results

bp = Blueprint("pages", __name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: The encodings the form offers; the API takes every one webapp.upload.decoding accepts.
FORM_ENCODINGS = (
    ("utf-8", "UTF-8 (most files)"),
    ("cp1252", "Windows-1252 (older Excel on Windows)"),
    ("latin-1", "Latin-1 (ISO-8859-1)"),
)
#: While a batch runs, a page without JavaScript reloads itself this often.
REFRESH_SECONDS = 5
#: Set-aside rows listed on the batch page; the rest are on the set-aside page.
ERRORS_SHOWN = 10
#: The histogram's bins: compound scores from -1 to 1 in steps of 0.1, the last one holding 1
#: (core.batches.summaries counts a final batch's; batch_view.js bins the live ones the same way).
HISTOGRAM_BINS = summaries.BINS


@bp.get("/")
def home() -> Response:
    """The upload form and the recent batches, newest first."""
    return upload_form()


def upload_form(problem: Problem | None = None) -> Response:
    """The home page; with ``problem``, the form again with why the upload was refused.

    A refused upload keeps the choices made in the form (strict, encoding, the columns, a sheet
    named in the query string, as the column picker sends it); the browser cannot
    refill the file input, so the file is chosen again. The page is the answer to the form's
    POST; upload.js then puts ``/`` in the address bar, so a reload shows the form afresh
    instead of asking to send the file again.
    """
    listing = batches_page(request.args if request.method == "GET" else {})
    options = g.get("upload_options")
    html = render_template(
        "index.html",
        problem=problem,
        listing=listing,
        strict=options.strict if options else False,
        encoding=options.encoding if options else "utf-8",
        text_column=(options.text_column if options else None) or "",
        id_column=(options.id_column if options else None) or "",
        sheet=request.args.get("sheet", "") if problem else "",
        encodings=FORM_ENCODINGS,
        max_upload_bytes=settings().max_upload_bytes,
    )
    return negotiated(make_response(html, problem.status if problem else 200))


def batch_url(public_id: str, **params: Any) -> str:
    url = url_for("api.get_batch", public_id=public_id)
    return f"{url}?{urlencode(params)}" if params else url


def _page_number(page: Page[Any]) -> int | None:
    """Which page this is: asked for by number, carried by a Previous/Next link (``p``), or the
    first when no position was asked for; None for a cursor that came without one."""
    if page.request.page is not None:
        return page.request.page
    carried = request.args.get("p", "")
    if carried.isascii() and carried.isdigit() and 0 < int(carried) <= MAX_ROW_NUMBER:
        return int(carried)
    return None


def pager(page: Page[Any], total: int, url: Any) -> dict[str, Any]:
    """What the pagers above and below a list show: which rows of how many, the page number, and
    First, Previous, Next and Last links; ``url(**params)`` is the list's address with params.

    A list numbered densely (a file's rows, set-aside rows) links each page by number; one
    sentiment's rows go back and forth by the API's cursors, carrying the page number along."""
    base: dict[str, Any] = dict(page.filters)
    if page.request.per_page != DEFAULT_PER_PAGE:
        base["per_page"] = page.request.per_page
    number = _page_number(page)
    pages = max(1, -(-total // page.request.per_page))
    links: dict[str, str] = {}
    if number is not None and number > 1:
        links["first"] = url(**base, page=1)

    def carried(step: int) -> dict[str, int]:
        return {"p": number + step} if number is not None and number + step > 0 else {}

    if page.listing.numbered and number is not None:
        if number > 1:
            links["previous"] = url(**base, page=number - 1)
        if page.next_cursor is not None:
            links["next"] = url(**base, page=number + 1)
    else:
        if page.previous_cursor is not None:
            links["previous"] = url(**base, before=page.previous_cursor, **carried(-1))
        if page.next_cursor is not None:
            links["next"] = url(**base, after=page.next_cursor, **carried(1))
    if number is None or number < pages:
        links["last"] = url(**base, page=pages)
    first = (number - 1) * page.request.per_page + 1 if number is not None else None
    last = first + len(page.items) - 1 if first is not None and page.items else None
    shown = {"number": number, "pages": pages, "total": total, "first": first, "last": last}
    return {**shown, "links": links, "hidden": base}


def describe_duration(seconds: float) -> str:
    """A short human duration: '45 s', '3 min 20 s', '2 h 5 min'."""
    whole = round(seconds)
    if whole < 1:
        return "under a second"
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _summary_bars(batch: Batch) -> list[dict[str, Any]]:
    """The chart's bars: each sentiment's count and its share of the scored rows."""
    scored = sum(batch.sentiment_count(s) for s in SENTIMENTS)
    return [
        {
            "sentiment": s,
            "count": batch.sentiment_count(s),
            "percent": round(100.0 * batch.sentiment_count(s) / scored, 1) if scored else 0.0,
        }
        for s in SENTIMENTS
    ]


def _took(batch: Batch) -> str | None:
    """How long runners took, from the first claim to the last chunk."""
    if batch.started_at is None or batch.completed_at is None:
        return None
    return describe_duration((batch.completed_at - batch.started_at).total_seconds())


def histogram(conn: psycopg.Connection, batch: Batch) -> list[int]:
    """Rows per bin of compound score. A running batch's page starts from zeros: its script fills
    the bins from the event stream, which replays every row scored so far. A final batch's bins
    are its summary's (:func:`core.batches.summaries.read`: counted once, then kept)."""
    scores = summaries.read(conn, batch)
    return scores.histogram if scores else [0] * HISTOGRAM_BINS


def _results(conn: psycopg.Connection, batch: Batch) -> Page[Any] | None:
    """The page of results the address asks for; None while the batch has none to show (a
    filtered or ordered list of a batch still running is shown once it is final)."""
    try:
        return results_page(conn, batch, request.args)
    except Conflict:
        return None


def _results_total(batch: Batch, page: Page[Any]) -> int:
    sentiment = page.filters.get("sentiment")
    return batch.sentiment_count(sentiment) if sentiment else batch.processed_count + batch.failed_count


def batch_page(conn: psycopg.Connection, batch: Batch) -> Response:
    """A batch as a page: progress, the rows scored so far, the histogram; the chart and the most
    negative groups of a kept column (``?by=``) once done."""
    page = _results(conn, batch)
    set_aside = batches.row_errors(conn, batch, limit=ERRORS_SHOWN) if batch.invalid_count else []
    progress = batch.progress(datetime.now(UTC))
    running = batch.status == "processing"
    html = render_template(
        "batch.html",
        batch=batch,
        running=running,
        progress=progress,
        rate=f"{progress.rows_per_second:,.0f} rows/s" if progress.rows_per_second else "—",
        time_left=describe_duration(progress.seconds_left) if progress.seconds_left is not None else "—",
        took=_took(batch),
        bars=_summary_bars(batch) if batch.finished else [],
        histogram=histogram(conn, batch),
        groups=page_groups(conn, batch, request.args),
        page=page,
        pager=pager(page, _results_total(batch, page), functools.partial(_results_url, batch))
        if page
        else None,
        sentiment=page.filters.get("sentiment") if page else None,
        sentiments=SENTIMENTS,
        set_aside=set_aside,
        # A deep page whose checkpoints are still being written: load again in a second.
        refresh_seconds=REFRESH_SECONDS if running else (1 if page and page.not_yet else None),
    )
    return negotiated(make_response(html))


def _results_url(batch: Batch, **params: Any) -> str:
    return batch_url(batch.public_id, **params) + "#results"


def set_aside_page(conn: psycopg.Connection, batch: Batch) -> Response:
    """The rows an upload set aside, a page at a time, with the line and the reason of each."""
    key = signing_key(conn)
    page_request = parse_page_request(request.args, ERRORS, batch.public_id, {}, key)
    page = read_results(
        batch, conn, lambda reading: read_page(reading, ERRORS, batch, batch.public_id, page_request, {}, key)
    )

    def url(**params: Any) -> str:
        return url_for("pages.set_aside", public_id=batch.public_id, **params)

    html = render_template(
        "set_aside.html", batch=batch, page=page, pager=pager(page, batch.invalid_count, url)
    )
    return negotiated(make_response(html))


@bp.get("/batch/<public_id>/set-aside")
def set_aside(public_id: str) -> Response:
    """The set-aside rows' page (``/batch/<id>/errors`` is the same list as JSON)."""
    with connection() as conn:
        return set_aside_page(conn, batches.get(conn, public_id))


def _utc(moment: datetime | str | None) -> str:
    """A time as 'YYYY-MM-DD HH:MM:SS UTC', from a datetime or the API's ISO 8601 text."""
    if not moment:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _secure_html(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_filter(lambda n: f"{n:,}", "thousands")
    app.add_template_filter(_utc, "utc")
    app.add_template_global(batch_url)
    app.add_template_global(HISTOGRAM_BINS, "histogram_bins")
    app.after_request(_secure_html)
