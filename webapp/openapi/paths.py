"""The paths of the OpenAPI document: every operation, its parameters and its answers.

The objects' schemas are referenced by name; :mod:`webapp.openapi.document` defines them
(from core's members) and assembles the document.
"""

from __future__ import annotations

from typing import Any

from core.batches import SENTIMENTS, STATUSES
from webapp import webhooks
from webapp.pagination import MAX_PER_PAGE

NEXT_LINK = {"Link": {"description": 'The next page: <url>; rel="next"', "schema": {"type": "string"}}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(schema: dict[str, Any], description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def problem_answers(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/Problem{code}"} for code in codes}


#: gzip both ways (webapp.upload.compression): an upload's Content-Encoding, a download's Accept-Encoding.
CONTENT_ENCODING = {
    "name": "Content-Encoding",
    "in": "header",
    "schema": {"enum": ["gzip", "x-gzip", "identity"]},
    "description": "gzip: the body (a CSV, or the whole form) is gzip-compressed; it is inflated as it "
    "streams, and MAX_UPLOAD_BYTES and MAX_ROWS count the inflated data. Any other coding is a 415. "
    "A file that is itself gzip (reviews.csv.gz, by its magic bytes) is inflated too, without it.",
}
ACCEPT_ENCODING = {
    "name": "Accept-Encoding",
    "in": "header",
    "schema": {"type": "string", "examples": ["gzip", "identity"]},
    "description": "With gzip accepted, the download is gzip-compressed (Content-Encoding: gzip), still "
    "streamed: each write is compressed and flushed on its own.",
}
DOWNLOAD_HEADERS = {
    "Content-Encoding": {
        "schema": {"const": "gzip"},
        "description": "Present when Accept-Encoding allowed gzip: the body is gzip-compressed.",
    },
    "Vary": {"schema": {"type": "string"}, "description": "Names Accept-Encoding: the body depends on it."},
}


BATCH_ID = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The id the upload answered with (batch-<32 hex digits>).",
}
PAGE_PARAMETERS = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1},
        "description": "Page number, from 1 (not with `after`).",
    },
    {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
        "description": f"Rows per page, 1 to {MAX_PER_PAGE}; 50 by default.",
    },
    {
        "name": "after",
        "in": "query",
        "schema": {"type": "string"},
        "description": "A `next_cursor` from the previous page (not with `page`).",
    },
    {
        "name": "before",
        "in": "query",
        "schema": {"type": "string"},
        "description": "The page before a position: a cursor from a Previous link of the batch page.",
    },
]


def paths() -> dict[str, Any]:
    """Every path of the API."""
    from webapp.openapi.upload import upload_operation  # it builds on the helpers above

    results_params = [
        BATCH_ID,
        *PAGE_PARAMETERS,
        {
            "name": "sentiment",
            "in": "query",
            "schema": {"enum": list(SENTIMENTS)},
            "description": "Only rows with this sentiment; by page number at any depth, or by cursor.",
        },
        {
            "name": "order",
            "in": "query",
            "schema": {"enum": ["row", "compound", "-compound"]},
            "description": "row: file order (the default); compound: most negative first; -compound: most "
            "positive first (rows whose scoring failed are left out). Read forwards, by cursor or by page.",
        },
    ]
    download = {"description": "The whole batch, streamed as an attachment."}
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
                "summary": "Keyset pages of a finished batch's results: in file order, or by score",
                "parameters": results_params,
                "responses": {
                    "200": json_answer(ref("ResultsPage"), "One page.", NEXT_LINK),
                    **problem_answers("400", "401", "404", "409", "503"),
                },
            }
        },
        "/batch/{batch_id}/errors": {
            "get": {
                "summary": "Keyset pages of the rows set aside at upload",
                "parameters": [BATCH_ID, *PAGE_PARAMETERS[:3]],
                "responses": {
                    "200": json_answer(ref("ErrorsPage"), "One page.", NEXT_LINK),
                    **problem_answers("400", "401", "404", "503"),
                },
            }
        },
        "/batch/{batch_id}/results.csv": {
            "get": {
                "summary": "Download every result as CSV",
                "parameters": [BATCH_ID, ACCEPT_ENCODING],
                "responses": {
                    "200": {
                        **download,
                        "headers": DOWNLOAD_HEADERS,
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **problem_answers("401", "404", "409", "503"),
                },
            }
        },
        "/batch/{batch_id}/results.ndjson": {
            "get": {
                "summary": "Download every result as NDJSON",
                "parameters": [BATCH_ID, ACCEPT_ENCODING],
                "responses": {
                    "200": {
                        **download,
                        "headers": DOWNLOAD_HEADERS,
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    **problem_answers("401", "404", "409", "503"),
                },
            }
        },
        "/batches": {
            "get": {
                "summary": "Batches, newest first",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                    {
                        "name": "client",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
                        "description": "Only this client's batches (admin key: any; client key: itself).",
                    },
                    {
                        "name": "metadata",
                        "in": "query",
                        "style": "deepObject",
                        "explode": True,
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                        "description": "metadata[key]=value: only batches carrying these labels.",
                    },
                    PAGE_PARAMETERS[1],
                    PAGE_PARAMETERS[2],
                ],
                "responses": {
                    "200": json_answer(
                        ref("BatchList"), "One page of the batches the caller may see.", NEXT_LINK
                    ),
                    **problem_answers("400", "401", "403", "503"),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [{}],
                "responses": {
                    "200": json_answer(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive."
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: database reachable, migrations applied",
                "security": [{}],
                "responses": {
                    "200": json_answer(
                        {"type": "object", "properties": {"status": {"const": "ready"}}}, "Ready."
                    ),
                    **problem_answers("503"),
                },
            }
        },
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
        **webhooks.openapi_paths(problem_answers("401", "404", "503")),
    }
