"""Summaries by group in the OpenAPI document: ``GET /batch/{batch_id}/summary`` and its schemas
(derived from :mod:`core.batches.groups`)."""

from __future__ import annotations

from typing import Any

from core.batches import groups
from webapp.openapi.common import BATCH_ID, json_answer, problem_answers, query, ref

SCHEMAS = groups.SCHEMAS


def group_paths() -> dict[str, Any]:
    """GET /batch/{batch_id}/summary."""
    by = {
        **query("by", {"type": "string"}, "One of the batch's kept columns (the upload's other columns)."),
        "required": True,
    }
    limit = query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": groups.KEPT_GROUPS, "default": groups.DEFAULT_GROUPS},
        f"Groups listed, 1 to {groups.KEPT_GROUPS:,}; the rest are folded into `other`.",
    )
    return {
        "/batch/{batch_id}/summary": {
            "get": {
                "summary": "A finished batch's results per value of one kept column",
                "description": "Groups are ordered by rows (most first), ties by value in byte order; "
                "each has its count (scored and failed rows), the three sentiments, the failed rows "
                "and the scored rows' mean compound. Counted in PostgreSQL by the first request for a "
                "column once the batch is final, then kept (the 1,000 largest groups and the rest "
                "folded). An unknown `by` is a 400 `unknown-column` listing the kept columns "
                "(`columns`); `by` or `limit` given twice a 400 `invalid-parameter`; a batch still "
                "processing a 409 `batch-not-finished`. A column's first count holds one of the "
                "worker's export slots (503 `too-many-exports` with `Retry-After: 5` when none is "
                "free); while another request counts the same column the answer is a 503 "
                "`summary-not-ready` with `Retry-After: 2`, at once.",
                "parameters": [BATCH_ID, by, limit],
                "responses": {
                    "200": json_answer(ref("GroupSummary"), "The groups."),
                    **problem_answers("400", "401", "404", "409", "503"),
                },
            }
        }
    }
