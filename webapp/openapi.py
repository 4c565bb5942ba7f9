"""The OpenAPI 3.1 document of the JSON API, served at ``/openapi.json``.

Built here as data so its enumerations are the code's own (sentiments,
statuses, page limits). tests/integration/test_openapi.py runs schemathesis
against the live app: no 5xx, every response matches this document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from webapp.listings import BATCH_STATUSES, SENTIMENTS
from webapp.pagination import MAX_PER_PAGE

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
]


def _page_schema(list_name: str, total_name: str, item: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """A keyset page of a batch's ``list_name``."""
    return {
        "type": "object",
        "required": ["batch_id", "page", "per_page", total_name, list_name, "next_cursor"],
        "properties": {
            "batch_id": {"type": "string"},
            "page": {"type": ["integer", "null"]},
            "per_page": {"type": "integer"},
            total_name: {"type": "integer", "minimum": 0},
            list_name: {"type": "array", "items": _ref(item)},
            "next_cursor": {"type": ["string", "null"]},
            **extra,
        },
    }


NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
FILENAME = {"type": ["string", "null"], "description": "The uploaded file's name, if it had one."}
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
            "status_of_batch": {"type": "string", "enum": list(BATCH_STATUSES)},
        },
    },
    "BatchCreated": {
        "type": "object",
        "required": ["batch_id", "status", "total_count", "processed_count", "invalid_count"],
        "properties": {
            "batch_id": {"type": "string"},
            "status": {"const": "processing"},
            "total_count": COUNT,
            "processed_count": COUNT,
            "invalid_count": COUNT,
        },
    },
    "Batch": {
        "type": "object",
        "required": [
            "batch_id",
            "status",
            "total_count",
            "processed_count",
            "invalid_count",
            "failed_count",
            "progress_percent",
            "created_at",
            "started_at",
            "completed_at",
        ],
        "properties": {
            "batch_id": {"type": "string"},
            "status": {"type": "string", "enum": list(BATCH_STATUSES)},
            "total_count": COUNT,
            "processed_count": COUNT,
            "invalid_count": COUNT,
            "failed_count": COUNT,
            "progress_percent": {"type": "number", "minimum": 0, "maximum": 100},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_TIME,
            "completed_at": NULLABLE_TIME,
            "filename": FILENAME,
            "summary": {
                "type": "object",
                "required": list(SENTIMENTS),
                "properties": {s: COUNT for s in SENTIMENTS},
            },
        },
    },
    "Result": {
        "type": "object",
        "required": ["row", "line", "id", "text", "sentiment", "score", "compound"],
        "properties": {
            "row": {"type": "integer", "minimum": 1},
            "line": {"type": ["integer", "null"]},
            "id": {"type": "string"},
            "text": {"type": "string"},
            "sentiment": {"enum": [*SENTIMENTS, None]},
            "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "compound": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
            "error": {"type": "string", "description": "Why scoring this row failed."},
        },
    },
    "RowError": {
        "type": "object",
        "required": ["error", "line", "id", "reason", "detail"],
        "properties": {
            "error": {"type": "integer", "minimum": 1},
            "line": {"type": "integer"},
            "id": {"type": ["string", "null"]},
            "reason": {"enum": ["wrong_field_count", "empty_text", "text_too_long", "nul_character"]},
            "detail": {"type": "string"},
        },
    },
    "ResultsPage": _page_schema("results", "total_results", "Result", sentiment={"enum": list(SENTIMENTS)}),
    "ErrorsPage": _page_schema("errors", "total_errors", "RowError"),
    "BatchList": {
        "type": "object",
        "required": ["per_page", "status", "batches", "next_cursor"],
        "properties": {
            "per_page": {"type": "integer"},
            "status": {"enum": [*BATCH_STATUSES, None]},
            "next_cursor": {"type": ["string", "null"]},
            "batches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "batch_id",
                        "status",
                        "total_count",
                        "processed_count",
                        "invalid_count",
                        "failed_count",
                        "created_at",
                        "completed_at",
                    ],
                    "properties": {
                        "batch_id": {"type": "string"},
                        "status": {"enum": list(BATCH_STATUSES)},
                        "total_count": COUNT,
                        "processed_count": COUNT,
                        "invalid_count": COUNT,
                        "failed_count": COUNT,
                        "created_at": {"type": "string", "format": "date-time"},
                        "completed_at": NULLABLE_TIME,
                        "filename": FILENAME,
                    },
                },
            },
        },
    },
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
                            _ref("BatchCreated"),
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
                    "parameters": [BATCH_ID, *PAGE_PARAMETERS],
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
                        {"name": "status", "in": "query", "schema": {"enum": list(BATCH_STATUSES)}},
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
