"""The paths of the OpenAPI document: every operation, its parameters and its answers.

The objects' schemas are referenced by name; :mod:`webapp.openapi.document` defines them
(from core's members) and assembles the document.
"""

from __future__ import annotations

from typing import Any

from core.batches import SENTIMENTS, STATUSES
from webapp.openapi.common import BATCH_ID, json_answer, problem_answers, query, ref
from webapp.openapi.feed import FOLLOW, feed_paths
from webapp.openapi.groups import group_paths
from webapp.openapi.upload import upload_operation
from webapp.openapi.webhooks import webhook_paths
from webapp.pagination import MAX_PER_PAGE

NEXT_LINK = {"Link": {"description": 'The next page: <url>; rel="next"', "schema": {"type": "string"}}}

#: gzip downloads (webapp.upload.compression): what the client accepts, and what it gets.
ACCEPT_ENCODING = {
    "name": "Accept-Encoding",
    "in": "header",
    "schema": {"type": "string", "examples": ["gzip", "identity"]},
    "description": "With gzip accepted, the download is gzip-compressed (Content-Encoding: gzip), still "
    "streamed: each write is compressed and flushed on its own. `results.ndjson?follow=true` is "
    "deflate-compressed instead, when deflate is accepted (as for the events stream).",
}
DOWNLOAD_HEADERS = {
    "Content-Encoding": {
        "schema": {"enum": ["gzip", "deflate"]},
        "description": "Present when Accept-Encoding allowed it: gzip for a download, deflate for a "
        "followed `results.ndjson`.",
    },
    "Vary": {"schema": {"type": "string"}, "description": "Names Accept-Encoding: the body depends on it."},
}

PAGE = query("page", {"type": "integer", "minimum": 1}, "Page number, from 1 (not with `after`).")
PER_PAGE = query(
    "per_page",
    {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
    f"Rows per page, 1 to {MAX_PER_PAGE}; 50 by default.",
)
AFTER = query("after", {"type": "string"}, "A `next_cursor` from the previous page (not with `page`).")
BEFORE = query(
    "before",
    {"type": "string"},
    "The page before a position: a cursor from a Previous link of the batch page.",
)
RESULTS_PARAMETERS = [
    BATCH_ID,
    PAGE,
    PER_PAGE,
    AFTER,
    BEFORE,
    query(
        "sentiment",
        {"enum": list(SENTIMENTS)},
        "Only rows with this sentiment; by page number at any depth, or by cursor.",
    ),
    query(
        "order",
        {"enum": ["row", "compound", "-compound"]},
        "row: file order (the default); compound: most negative first; -compound: most "
        "positive first (rows whose scoring failed are left out). Read forwards, by cursor or by page.",
    ),
]
BATCHES_PARAMETERS = [
    query("status", {"enum": list(STATUSES)}),
    query(
        "client",
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        "Only this client's batches (admin key: any; client key: itself).",
    ),
    {
        **query(
            "metadata",
            {"type": "object", "additionalProperties": {"type": "string"}},
            "metadata[key]=value: only batches carrying these labels.",
        ),
        "style": "deepObject",
        "explode": True,
    },
    PER_PAGE,
    AFTER,
]


def _download(summary: str, media_type: str, description: str, *more: dict[str, Any]) -> dict[str, Any]:
    """A whole batch's results, streamed in one format."""
    return {
        "get": {
            "summary": summary,
            "description": description,
            "parameters": [BATCH_ID, ACCEPT_ENCODING, *more],
            "responses": {
                "200": {
                    "description": "The whole batch, streamed as an attachment.",
                    "headers": DOWNLOAD_HEADERS,
                    "content": {media_type: {"schema": {"type": "string"}}},
                },
                **problem_answers("401", "404", "409", "503"),
            },
        }
    }


def _status(summary: str, status: str, description: str, *problems: str) -> dict[str, Any]:
    """A health check: open to everyone, answering ``{"status": status}``."""
    body = {"type": "object", "properties": {"status": {"const": status}}}
    answers = {"200": json_answer(body, description), **problem_answers(*problems)}
    return {"get": {"summary": summary, "security": [{}], "responses": answers}}


def paths() -> dict[str, Any]:
    """Every path of the API."""
    return {
        "/batch/upload": {"post": upload_operation()},
        "/batch/{batch_id}": {
            "parameters": [BATCH_ID],
            "get": {
                "summary": "A batch's progress and, once finished, its summary",
                "description": "A browser (Accept: text/html) gets the batch's page instead: "
                "live progress, and once finished the chart, the results and the downloads.",
                "responses": {
                    "200": json_answer(ref("Batch"), "The batch."),
                    **problem_answers("401", "404", "503"),
                },
            },
            "delete": {
                "summary": "Remove a finished batch and all its rows",
                "responses": {
                    "204": {"description": "Deleted."},
                    **problem_answers("401", "404", "409", "503"),
                },
            },
        },
        "/batch/{batch_id}/cancel": {
            "post": {
                "summary": "Stop a processing batch",
                "parameters": [BATCH_ID],
                "responses": {
                    "200": json_answer(ref("Batch"), "The batch, now cancelled."),
                    **problem_answers("401", "404", "409", "503"),
                },
            }
        },
        "/batch/{batch_id}/results": {
            "get": {
                "summary": "Keyset pages of a batch's results: in file order (as it runs), or by score",
                "description": "While the batch runs, file-order pages hold the rows scored so far "
                "(`complete` is false): chunks finish out of order, so a page may skip rows that come "
                "later; the last page still has a `next_cursor` to ask again from. Follow "
                "`/batch/{batch_id}/events` to see every row. `sentiment` and `order` wait for the "
                "batch to complete (409).",
                "parameters": RESULTS_PARAMETERS,
                "responses": {
                    "200": json_answer(ref("ResultsPage"), "One page.", NEXT_LINK),
                    **problem_answers("400", "401", "404", "409", "503"),
                },
            }
        },
        "/batch/{batch_id}/errors": {
            "get": {
                "summary": "Keyset pages of the rows set aside at upload",
                "parameters": [BATCH_ID, PAGE, PER_PAGE, AFTER],
                "responses": {
                    "200": json_answer(ref("ErrorsPage"), "One page.", NEXT_LINK),
                    **problem_answers("400", "401", "404", "503"),
                },
            }
        },
        "/batch/{batch_id}/results.csv": _download(
            "Download every result as CSV",
            "text/csv",
            "Columns id, text, sentiment, score, compound, pos, neu, neg, error, then the file's other "
            "columns (the batch's kept columns) in file order. A cell starting with =, +, -, @, TAB or "
            "CR gets a leading '.",
        ),
        "/batch/{batch_id}/results.ndjson": _download(
            "Download every result as NDJSON, or follow them as scored",
            "application/x-ndjson",
            "One object per line: id, text, sentiment, score, compound, pos, neu, neg, error, and "
            "`fields` (the file's other columns and the row's values, in file order) when the file "
            "had any.",
            FOLLOW,
        ),
        "/batches": {
            "get": {
                "summary": "Batches, newest first",
                "parameters": BATCHES_PARAMETERS,
                "responses": {
                    "200": json_answer(
                        ref("BatchList"), "One page of the batches the caller may see.", NEXT_LINK
                    ),
                    **problem_answers("400", "401", "403", "503"),
                },
            }
        },
        "/healthz": _status("Liveness", "ok", "Alive."),
        "/readyz": _status(
            "Readiness: database reachable, migrations applied, room on its disk", "ready", "Ready.", "503"
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **problem_answers("401", "403", "503"),
                },
            }
        },
        **feed_paths(),
        **group_paths(),
        **webhook_paths(),
    }
