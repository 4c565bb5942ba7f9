"""Summaries by group: ``GET /batch/<id>/summary?by=COLUMN&limit=N``, and the batch page's groups.

The counting and keeping is :mod:`core.batches.groups`; this module parses the query (``by`` a
kept column, else a 400 listing them; ``limit`` 1 to 1,000, 50 by default; either given twice is a
400), reads as the caller (row-level security, as every ``/batch/<id>`` read) and answers JSON. A
browser asking for the address is sent to the batch page, which shows the column's most negative
groups.

Kept groups are read on the request's own connection. A column's first request is one pass over
the whole batch, as an export is: it holds one of the worker's export slots (MAX_EXPORTS; 503
``too-many-exports`` at once when none is free, :mod:`webapp.server.admission`) and gets the
exports' statement bound (BULK_STATEMENT_TIMEOUT); while another request counts the same column,
it is a 503 ``summary-not-ready`` at once, never a wait.

The batch page never fails for its groups: it shows the kept ones, counts them itself only for a
batch of up to PAGE_COUNTS_UP_TO results (a few seconds, inside STATEMENT_TIMEOUT), and says why
in a note when it shows none (an unknown ``by``, a count under way elsewhere or cut short).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from core import batches
from core.batches import groups
from core.batches.model import Batch
from core.errors import InvalidInput, NotReady
from webapp.db import bulk_connection, connection
from webapp.negotiation import negotiated, wants_html
from webapp.pagination import bad_parameter, positive_int
from webapp.server import admission

bp = Blueprint("groups", __name__)

#: Most negative groups the batch page shows.
SHOWN_ON_PAGE = 5
#: The batch page counts a column's groups itself for batches of up to this many results (a few
#: seconds, well inside STATEMENT_TIMEOUT); a bigger batch's page shows the groups once the API
#: has counted them.
PAGE_COUNTS_UP_TO = 2_000_000


def _once(args: MultiDict[str, str], *names: str) -> None:
    """A 400 for a parameter given more than once: neither value silently wins."""
    for name in names:
        if len(args.getlist(name)) > 1:
            raise bad_parameter(f"{name} is given more than once in the query string; give it once.")


@bp.get("/batch/<public_id>/summary")
def group_summary(public_id: str) -> Response:
    """A final batch's results per value of one kept column, largest groups first."""
    with connection() as conn:
        batch = batches.get(conn, public_id)
        if wants_html():
            to = url_for("api.get_batch", public_id=public_id, by=request.args.get("by")) + "#groups"
            return negotiated(redirect(to, 303))
        _once(request.args, "by", "limit")
        limit = positive_int(request.args, "limit", groups.DEFAULT_GROUPS, groups.KEPT_GROUPS)
        by = groups.column(batch, request.args.get("by"))
        summary = groups.kept(conn, batch, by, limit)
    if summary is None:
        release = admission.take("exports")
        try:
            with bulk_connection() as conn:
                summary = groups.counted(conn, batch, by, limit)
        finally:
            release()
    return negotiated(jsonify(summary.to_json()))


def page_groups(conn: psycopg.Connection, batch: Batch, args: Mapping[str, str]) -> dict[str, Any] | None:
    """What the batch page shows of a column's groups (``?by=``, else the first kept column): its
    most negative ones (:func:`core.batches.groups.most_negative`) among the largest
    KEPT_GROUPS, counted here up to PAGE_COUNTS_UP_TO results; None for a batch still processing
    or without kept columns. Never an error: ``note`` says why no groups are shown."""
    if not batch.finished or not batch.field_names:
        return None
    shown: dict[str, Any] = {
        "by": batch.field_names[0],
        "columns": batch.field_names,
        "counted": False,
        "worst": [],
        "min_rows": groups.MIN_SCORED_ROWS,
        "groups": 0,
        "note": None,
    }
    try:
        shown["by"] = by = groups.column(batch, args.get("by") or batch.field_names[0])
        summary = groups.kept(conn, batch, by, groups.KEPT_GROUPS)
        if summary is None and batch.processed_count + batch.failed_count <= PAGE_COUNTS_UP_TO:
            with conn.transaction():  # a savepoint: a count cut short leaves the page's reads going
                summary = groups.counted(conn, batch, by, groups.KEPT_GROUPS)
    except InvalidInput as exc:
        shown["note"] = exc.detail
        return shown
    except NotReady:
        shown["note"] = "Its groups are being counted for another request: reload in a few seconds."
        return shown
    except psycopg.errors.QueryCanceled:
        shown["note"] = "Counting its groups took too long for a page; the API counts them (and keeps them)."
        return shown
    if summary is not None:
        shown.update(
            counted=True,
            worst=groups.most_negative(summary, SHOWN_ON_PAGE),
            groups=len(summary.groups) + summary.other.groups,
        )
    return shown
