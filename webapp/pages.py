"""Server-rendered pages for people with a browser: upload, watch, read, download.

``GET /`` is the upload form and the recent batches. A browser's form POST to ``/batch/upload``
and its ``GET /batch/<id>`` reach the JSON views in :mod:`webapp.api`, which hand over to
:func:`upload_form` and :func:`batch_page` here (:mod:`webapp.negotiation`), so each URL serves
both. Pages are autoescaped Jinja templates with two small scripts under ``static/``: the form's
drag-and-drop, and the live progress bar, which polls the JSON status. Without JavaScript the
form still uploads and a running batch's page reloads itself every few seconds. Every HTML
answer carries a Content-Security-Policy that allows only this site's own scripts and styles,
so text from an uploaded file could not run even if escaping were ever missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
from flask import Blueprint, Flask, Response, g, make_response, render_template, request, url_for

from core import batches
from core.batches import SENTIMENTS, Batch
from webapp.db import settings
from webapp.listings import batches_page, results_page
from webapp.negotiation import negotiated
from webapp.pagination import DEFAULT_PER_PAGE, Page
from webapp.problems import Problem

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
#: Set-aside rows listed on the batch page; the rest are at /batch/<id>/errors.
ERRORS_SHOWN = 10


@bp.get("/")
def home() -> Response:
    """The upload form and the recent batches, newest first."""
    return upload_form()


def upload_form(problem: Problem | None = None) -> Response:
    """The home page; with ``problem``, the form again with why the upload was refused.

    A refused upload keeps the choices made in the form (strict, encoding);
    the browser cannot refill the file input, so the file is chosen again.
    """
    listing = batches_page(request.args if request.method == "GET" else {})
    options = g.get("upload_options")
    html = render_template(
        "index.html",
        problem=problem,
        listing=listing,
        strict=options.strict if options else False,
        encoding=options.encoding if options else "utf-8",
        encodings=FORM_ENCODINGS,
        max_upload_bytes=settings().max_upload_bytes,
    )
    return negotiated(make_response(html, problem.status if problem else 200))


def batch_url(public_id: str, **params: Any) -> str:
    url = url_for("api.get_batch", public_id=public_id)
    return f"{url}?{urlencode(params)}" if params else url


def _page_links(batch: Batch, page: Page[Any]) -> dict[str, str]:
    """The Previous/Next links of a results page: the API's own cursors, on the batch page's URL."""
    base: dict[str, Any] = dict(page.filters)
    if page.request.per_page != DEFAULT_PER_PAGE:
        base["per_page"] = page.request.per_page
    links = {}
    for name, parameter, cursor in (
        ("previous", "before", page.previous_cursor),
        ("next", "after", page.next_cursor),
    ):
        if cursor is not None:
            links[name] = batch_url(batch.public_id, **base, **{parameter: cursor}) + "#results"
    return links


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


def batch_page(conn: psycopg.Connection, batch: Batch) -> Response:
    """A batch as a page: progress while it runs; the chart, results and downloads once done."""
    page = results_page(conn, batch, request.args) if batch.has_results else None
    set_aside = batches.row_errors(conn, batch, limit=ERRORS_SHOWN) if batch.invalid_count else []
    progress = batch.progress(datetime.now(UTC))
    html = render_template(
        "batch.html",
        batch=batch,
        progress=progress,
        rate=f"{progress.rows_per_second:,.0f} rows/s" if progress.rows_per_second else "—",
        time_left=describe_duration(progress.seconds_left) if progress.seconds_left is not None else "—",
        took=_took(batch),
        bars=_summary_bars(batch) if page else [],
        page=page,
        links=_page_links(batch, page) if page else {},
        sentiment=page.filters.get("sentiment") if page else None,
        sentiments=SENTIMENTS,
        set_aside=set_aside,
        # A deep page whose checkpoints are still being written: load again in a second.
        refresh_seconds=REFRESH_SECONDS
        if batch.status == "processing"
        else (1 if page and page.not_yet else None),
    )
    return negotiated(make_response(html))


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
    app.after_request(_secure_html)
