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
from core.jsonshape import Member, object_schema
from core.webhooks import SCHEMAS as WEBHOOK_SCHEMAS
from webapp.listings import BATCHES, ERRORS, RESULTS
from webapp.openapi.common import ref
from webapp.openapi.groups import SCHEMAS as GROUP_SCHEMAS
from webapp.openapi.paths import paths
from webapp.openapi.webhooks import webhook_events
from webapp.pagination import Listing
from webapp.problems import PROBLEM_MEMBERS

bp = Blueprint("openapi", __name__)


def _page_schema(listing: Listing, item: str, head: dict[str, Any], **filters: Any) -> dict[str, Any]:
    """A keyset page of ``listing``: ``head`` members, then the page, its items and the next cursor."""
    return {
        "type": "object",
        "required": [*head, "page", "per_page", listing.name, "next_cursor"],
        "properties": {
            **head,
            "page": {"type": ["integer", "null"]},
            "per_page": {"type": "integer"},
            listing.name: {"type": "array", "items": ref(item)},
            "next_cursor": {"type": ["string", "null"]},
            **filters,
        },
    }


COUNT = {"type": "integer", "minimum": 0}
#: What a 409 about a batch's state adds to its problem.
STATUS_OF_BATCH = Member(
    "status_of_batch",
    lambda p: p.extra.get("status_of_batch"),
    {"type": "string", "enum": list(STATUSES)},
    optional=True,
)

SCHEMAS: dict[str, Any] = {
    "Problem": object_schema((*PROBLEM_MEMBERS, STATUS_OF_BATCH), "RFC 9457 problem details."),
    **OBJECT_SCHEMAS,
    **WEBHOOK_SCHEMAS,
    **GROUP_SCHEMAS,
    "ResultsPage": _page_schema(
        RESULTS,
        "Result",
        {
            "batch_id": {"type": "string"},
            "complete": {"type": "boolean", "description": "false while rows may still be added."},
            "total_results": COUNT,
        },
        sentiment={"enum": list(SENTIMENTS)},
        order={"enum": ["compound", "-compound"]},
    ),
    "ErrorsPage": _page_schema(ERRORS, "RowError", {"batch_id": {"type": "string"}, "total_errors": COUNT}),
    "BatchList": _page_schema(
        BATCHES, "Batch", {"status": {"enum": [*STATUSES, None]}, "client": {"type": ["string", "null"]}}
    ),
}

PROBLEM_RESPONSES = {
    "400": "A bad request: a malformed file or parameter (the detail says which, and where).",
    "401": "An API key exists (or API_TOKEN is set) and the request has no valid, unrevoked key.",
    "403": "This needs an admin key.",
    "404": "No such batch, or another client's (the two are answered alike).",
    "408": "The client went silent for CLIENT_TIMEOUT seconds, or sent slower than MIN_UPLOAD_RATE.",
    "409": "The batch is not in a state that allows this, or an upload with the same Idempotency-Key "
    "is still in progress.",
    "413": "The upload is over MAX_UPLOAD_BYTES or MAX_ROWS.",
    "415": "The upload is neither multipart/form-data nor CSV.",
    "422": "The Idempotency-Key was used for another upload with a different file or options.",
    "429": "Too soon: the key's QUOTA_QUEUED_ROWS is used up, or an upload with a callback_url finds "
    "WEBHOOK_MAX_PENDING of the key's webhooks waiting (an upload), or the webhook was sent again less "
    "than a minute ago (a retry); retry after Retry-After seconds. Nothing was stored.",
    "503": "PostgreSQL is unreachable, or this worker already serves MAX_UPLOADS uploads or MAX_EXPORTS "
    "downloads; retry after Retry-After seconds. From /readyz: the database is unreachable, a migration "
    "is pending, or its disk is full (storage-full).",
    "507": "The disk of the database (or of the web server's temporary files) is full: nothing was "
    "stored; retry after Retry-After seconds, once space is freed.",
}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Batch sentiment service",
            "version": "1.0.0",
            "description": "Upload a CSV of texts, get VADER sentiment for every row.",
        },
        "security": [{}, {"bearer": []}],
        "paths": paths(),
        "webhooks": webhook_events(),
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"Problem{code}": {
                    "description": text,
                    "content": {"application/problem+json": {"schema": ref("Problem")}},
                }
                for code, text in PROBLEM_RESPONSES.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (python -m jobrunner keys create), or API_TOKEN; needed once "
                    "any key exists.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
