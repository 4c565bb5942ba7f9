"""Summaries by group: ``GET /batch/<id>/summary?by=COLUMN&limit=N``, and the batch page's groups.

The counting and keeping is :mod:`core.batches.groups`; this module parses the query (``by`` a
kept column, else a 400 listing them; ``limit`` 1 to 1,000, 50 by default), reads as the caller
(row-level security, as every ``/batch/<id>`` read) and answers JSON. A browser asking for the
address is sent to the batch page, which shows the column's most negative groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, redirect, request, url_for

from core import batches
from core.batches import groups
from core.batches.model import Batch
from webapp.db import bulk_connection
from webapp.negotiation import negotiated, wants_html
from webapp.pagination import positive_int

bp = Blueprint("groups", __name__)

#: Most negative groups the batch page shows.
SHOWN_ON_PAGE = 5
#: The batch page counts a column's groups itself for batches of up to this many results (a few
#: seconds, well inside STATEMENT_TIMEOUT); a bigger batch's page shows the groups once the API
#: has counted them.
PAGE_COUNTS_UP_TO = 2_000_000


def summary_of(conn: psycopg.Connection, batch: Batch, args: Mapping[str, str]) -> groups.GroupSummary:
    """The summary ``args`` ask for (400 for a bad ``by`` or ``limit``, 409 while processing)."""
    limit = positive_int(args, "limit", groups.DEFAULT_GROUPS, groups.KEPT_GROUPS)
    by = groups.column(batch, args.get("by"))
    summary = groups.read(conn, batch, by, limit)
    assert summary is not None  # counted when not kept
    return summary


@bp.get("/batch/<public_id>/summary")
def group_summary(public_id: str) -> Response:
    """A final batch's results per value of one kept column, largest groups first."""
    # A column's first request is one pass over the whole batch, as an export is: it gets the
    # exports' statement bound (BULK_STATEMENT_TIMEOUT); every later one reads the kept rows.
    with bulk_connection() as conn:
        batch = batches.get(conn, public_id)
        if wants_html():
            to = url_for("api.get_batch", public_id=public_id, by=request.args.get("by")) + "#groups"
            return negotiated(redirect(to, 303))
        summary = summary_of(conn, batch, request.args)
    return negotiated(jsonify(summary.to_json()))


def page_groups(conn: psycopg.Connection, batch: Batch, args: Mapping[str, str]) -> dict[str, Any] | None:
    """What the batch page shows of a column's groups (``?by=``, else the first kept column): its
    most negative ones (:func:`core.batches.groups.most_negative`) among the largest
    KEPT_GROUPS, counted here up to PAGE_COUNTS_UP_TO results; None for a batch still processing
    or without kept columns."""
    if not batch.finished or not batch.field_names:
        return None
    by = groups.column(batch, args.get("by") or batch.field_names[0])
    small = batch.processed_count + batch.failed_count <= PAGE_COUNTS_UP_TO
    summary = groups.read(conn, batch, by, groups.KEPT_GROUPS, count=small)
    return {
        "by": by,
        "columns": batch.field_names,
        "counted": summary is not None,
        "worst": groups.most_negative(summary, SHOWN_ON_PAGE) if summary else [],
        "min_rows": groups.MIN_SCORED_ROWS,
        "groups": len(summary.groups) + summary.other.groups if summary else 0,
    }
