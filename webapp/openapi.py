"""The OpenAPI 3.1 document of the JSON API, served at ``/openapi.json``.

Built here as data. The objects' schemas are not written here: the batch,
result and set-aside row come from the members that also build their JSON
(:data:`core.batches.SCHEMAS`), the pages' from the listings that serve them,
and the enumerations are the code's own (sentiments, statuses, page limits).
tests/integration/test_openapi.py runs schemathesis
against the live app: no 5xx, every response matches this document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from core.batches import SCHEMAS as OBJECT_SCHEMAS
from core.batches import SENTIMENTS, STATUSES
from webapp.listings import BATCHES, ERRORS, RESULTS
from webapp.pagination import MAX_PER_PAGE, Listing

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _problems(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/Problem{code}"} for code in codes}


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


def _page_schema(listing: Listing, item: str, head: dict[str, Any], **filters: Any) -> dict[str, Any]:
    """A keyset page of ``listing``: ``head`` members, then the page, its items and the next cursor."""
    return {
        "type": "object",
        "required": [*head, "page", "per_page", listing.name, "next_cursor"],
        "properties": {
            **head,
            "page": {"type": ["integer", "null"]},
            "per_page": {"type": "integer"},
            listing.name: {"type": "array", "items": _ref(item)},
            "next_cursor": {"type": ["string", "null"]},
            **filters,
        },
    }


COUNT = {"type": "integer", "minimum": 0}
NEXT_LINK = {"Link": {"description": 'The next page: <url>; rel="next"', "schema": {"type": "string"}}}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "status_of_batch": {"type": "string", "enum": list(STATUSES)},
        },
    },
    **OBJECT_SCHEMAS,
    "ResultsPage": _page_schema(
        RESULTS,
        "Result",
        {"batch_id": {"type": "string"}, "total_results": COUNT},
        sentiment={"enum": list(SENTIMENTS)},
    ),
    "ErrorsPage": _page_schema(ERRORS, "RowError", {"batch_id": {"type": "string"}, "total_errors": COUNT}),
    "BatchList": _page_schema(BATCHES, "Batch", {"status": {"enum": [*STATUSES, None]}}),
}

PROBLEM_RESPONSES = {
    "400": "A bad request: a malformed file or parameter (the detail says which, and where).",
    "401": "API_TOKEN is set and the request has no valid bearer token.",
    "404": "No such batch.",
    "409": "The batch is not in a state that allows this.",
    "413": "The upload is over MAX_UPLOAD_BYTES or MAX_ROWS.",
    "415": "The upload is neither multipart/form-data nor CSV.",
    "503": "PostgreSQL is unreachable; retry after Retry-After seconds.",
}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    results_params = [
        BATCH_ID,
        *PAGE_PARAMETERS,
        {
            "name": "sentiment",
            "in": "query",
            "schema": {"enum": list(SENTIMENTS)},
            "description": "Only rows with this sentiment (start at page 1, then follow next_cursor).",
        },
    ]
    download = {"description": "The whole batch, streamed as an attachment."}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Batch sentiment service",
            "version": "1.0.0",
            "description": "Upload a CSV of texts, get VADER sentiment for every row.",
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/batch/upload": {
                "post": {
                    "summary": "Upload a CSV (id,text) and start a batch",
                    "description": "A browser's form submission (Accept: text/html) is answered with "
                    "303 See Other to the batch's page instead, or with the form again when refused.",
                    "parameters": [
                        {
                            "name": "strict",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "true: reject the file at its first row problem.",
                        },
                        {
                            "name": "encoding",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "The file's text encoding (default UTF-8), e.g. cp1252.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {"type": "string", "contentMediaType": "text/csv"},
                                        "strict": {"type": "string"},
                                        "encoding": {"type": "string"},
                                    },
                                }
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "202": _json(
                            _ref("Batch"),
                            "Accepted: the rows are staged and queued.",
                            {"Location": {"schema": {"type": "string"}, "description": "The batch's URL."}},
                        ),
                        **_problems("400", "401", "413", "415", "503"),
                    },
                }
            },
            "/batch/{batch_id}": {
                "parameters": [BATCH_ID],
                "get": {
                    "summary": "A batch's progress and, once finished, its summary",
                    "description": "A browser (Accept: text/html) gets the batch's page instead: "
                    "live progress, and once finished the chart, the results and the downloads.",
                    "responses": {
                        "200": _json(_ref("Batch"), "The batch."),
                        **_problems("401", "404", "503"),
                    },
                },
                "delete": {
                    "summary": "Remove a finished batch and all its rows",
                    "responses": {
                        "204": {"description": "Deleted."},
                        **_problems("401", "404", "409", "503"),
                    },
                },
            },
            "/batch/{batch_id}/cancel": {
                "post": {
                    "summary": "Stop a processing batch",
                    "parameters": [BATCH_ID],
                    "responses": {
                        "200": _json(_ref("Batch"), "The batch, now cancelled."),
                        **_problems("401", "404", "409", "503"),
                    },
                }
            },
            "/batch/{batch_id}/results": {
                "get": {
                    "summary": "Keyset pages of a finished batch's results, in file order",
                    "parameters": results_params,
                    "responses": {
                        "200": _json(_ref("ResultsPage"), "One page.", NEXT_LINK),
                        **_problems("400", "401", "404", "409", "503"),
                    },
                }
            },
            "/batch/{batch_id}/errors": {
                "get": {
                    "summary": "Keyset pages of the rows set aside at upload",
                    "parameters": [BATCH_ID, *PAGE_PARAMETERS[:3]],
                    "responses": {
                        "200": _json(_ref("ErrorsPage"), "One page.", NEXT_LINK),
                        **_problems("400", "401", "404", "503"),
                    },
                }
            },
            "/batch/{batch_id}/results.csv": {
                "get": {
                    "summary": "Download every result as CSV",
                    "parameters": [BATCH_ID],
                    "responses": {
                        "200": {**download, "content": {"text/csv": {"schema": {"type": "string"}}}},
                        **_problems("401", "404", "409", "503"),
                    },
                }
            },
            "/batch/{batch_id}/results.ndjson": {
                "get": {
                    "summary": "Download every result as NDJSON",
                    "parameters": [BATCH_ID],
                    "responses": {
                        "200": {
                            **download,
                            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                        },
                        **_problems("401", "404", "409", "503"),
                    },
                }
            },
            "/batches": {
                "get": {
                    "summary": "Batches, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                        PAGE_PARAMETERS[1],
                        PAGE_PARAMETERS[2],
                    ],
                    "responses": {
                        "200": _json(_ref("BatchList"), "One page.", NEXT_LINK),
                        **_problems("400", "401", "503"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [{}],
                    "responses": {
                        "200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive.")
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database reachable, migrations applied",
                    "security": [{}],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"status": {"const": "ready"}}}, "Ready."
                        ),
                        **_problems("503"),
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
                        **_problems("401", "503"),
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"Problem{code}": {
                    "description": text,
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
                for code, text in PROBLEM_RESPONSES.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server sets API_TOKEN.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
