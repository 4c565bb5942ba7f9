"""Server-rendered pages for people with a browser: upload, watch, read, download.

``GET /`` is the upload form and the recent batches. A browser's form POST
to ``/batch/upload`` and its ``GET /batch/<id>`` reach the JSON views in
:mod:`webapp.api`, which hand over to :func:`upload_form` and
:func:`batch_page` here (content negotiation, :mod:`webapp.negotiation`), so
each URL serves both. Pages are Jinja templates (autoescaped) with two small
scripts under ``static/``: drag-and-drop on the form, and the live progress
bar, which polls the JSON status. Without JavaScript the form still uploads
and the batch page refreshes itself every few seconds while it runs.

Every HTML answer carries a Content-Security-Policy that allows only this
site's own scripts and styles, so text from an uploaded file could not run
even if escaping were ever missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, make_response, render_template, request, url_for

from core.queries import q
from webapp.db import get_pool, signing_key
from webapp.listings import SENTIMENTS, ResultsWindow, batches_page, results_window
from webapp.lookup import FINISHED_WITH_RESULTS, settings
from webapp.negotiation import negotiated
from webapp.pagination import (
    DEFAULT_PER_PAGE,
    bad_parameter,
    decode_cursor,
    encode_cursor,
    parse_per_page,
)
from webapp.problems import Problem
from webapp.progress import Progress, describe_duration

bp = Blueprint("pages", __name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: The encodings the form offers; the API takes any Python codec name (see csv_upload).
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


def _results_scope(sentiment: str | None) -> str:
    return f"page-results:{sentiment or ''}"


def _window_links(
    public_id: str, window: ResultsWindow, sentiment: str | None, per_page: int
) -> dict[str, str]:
    """The Previous/Next links of a results window: signed cursors, like the API's."""
    key = signing_key(settings())
    base: dict[str, Any] = {"per_page": per_page} if per_page != DEFAULT_PER_PAGE else {}
    if sentiment:
        base["sentiment"] = sentiment
    links = {}
    sides = (("previous", "before", window.first_row), ("next", "after", window.last_row))
    for name, parameter, row in sides:
        if row is not None:
            cursor = encode_cursor(key, public_id, row, _results_scope(sentiment))
            links[name] = batch_url(public_id, **base, **{parameter: cursor}) + "#results"
    return links


def batch_url(public_id: str, **params: Any) -> str:
    url = url_for("api.get_batch", public_id=public_id)
    return f"{url}?{urlencode(params)}" if params else url


def _read_window(batch: dict[str, Any]) -> tuple[ResultsWindow, dict[str, str], str | None]:
    """The results to show for ``?sentiment=&after=|before=&per_page=``, and their links."""
    args = request.args
    per_page = parse_per_page(args)
    sentiment = args.get("sentiment") or None
    if sentiment is not None and sentiment not in SENTIMENTS:
        raise bad_parameter(f"sentiment must be one of {', '.join(SENTIMENTS)}, got {sentiment!r}.")
    if "after" in args and "before" in args:
        raise bad_parameter("Use either after or before, not both.")
    positions = {}
    key, scope = signing_key(settings()), _results_scope(sentiment)
    for parameter in ("after", "before"):
        if parameter in args:
            row = decode_cursor(key, args[parameter], batch["public_id"], scope, parameter)
            if not isinstance(row, int) or row < 0:
                raise bad_parameter(f"The cursor in {parameter!r} is not valid; use the links as given.")
            positions[parameter] = row
    window = results_window(
        batch["id"], per_page, sentiment, positions.get("after", 0), positions.get("before")
    )
    return window, _window_links(batch["public_id"], window, sentiment, per_page), sentiment


def _set_aside_rows(batch_id: int) -> list[tuple]:
    with get_pool().connection() as conn:
        return conn.execute(
            q("batch_row_errors_page"), {"batch_id": batch_id, "after_row": 0, "limit": ERRORS_SHOWN}
        ).fetchall()


def _summary_bars(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's bars: each sentiment's count and its share of the scored rows."""
    scored = sum(batch[f"{s}_count"] for s in SENTIMENTS)
    return [
        {
            "sentiment": s,
            "count": batch[f"{s}_count"],
            "percent": round(100.0 * batch[f"{s}_count"] / scored, 1) if scored else 0.0,
        }
        for s in SENTIMENTS
    ]


def _took(batch: dict[str, Any]) -> str | None:
    """How long runners took, from the first claim to the last chunk."""
    if batch["started_at"] is None or batch["completed_at"] is None:
        return None
    return describe_duration((batch["completed_at"] - batch["started_at"]).total_seconds())


def batch_page(batch: dict[str, Any]) -> Response:
    """A batch as a page: progress while it runs; the chart, results and downloads once done."""
    has_results = batch["status"] in FINISHED_WITH_RESULTS
    window, links, sentiment = _read_window(batch) if has_results else (None, {}, None)
    progress = Progress.of(batch, datetime.now(UTC))
    html = render_template(
        "batch.html",
        batch=batch,
        progress=progress,
        rate=f"{progress.rows_per_second:,.0f} rows/s" if progress.rows_per_second else "—",
        time_left=describe_duration(progress.seconds_left) if progress.seconds_left is not None else "—",
        took=_took(batch),
        bars=_summary_bars(batch) if has_results else [],
        window=window,
        links=links,
        sentiment=sentiment,
        sentiments=SENTIMENTS,
        set_aside=_set_aside_rows(batch["id"]) if batch["invalid_count"] else [],
        refresh_seconds=REFRESH_SECONDS if batch["status"] == "processing" else None,
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
