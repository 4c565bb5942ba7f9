"""The upload's operation in the OpenAPI document: its parameters, body, headers and answers."""

from __future__ import annotations

from typing import Any

from webapp import webhooks
from webapp.openapi.paths import CONTENT_ENCODING, json_answer, problem_answers, ref

UPLOAD_LABEL_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "metadata",
        "in": "query",
        "schema": {"type": "string", "contentMediaType": "application/json"},
        "description": "Labels: a JSON object of up to 16 string pairs (key up to 64 characters, value up "
        "to 512); a form field before the file, or this parameter.",
    },
    {
        "name": "expires_after",
        "in": "query",
        "schema": {"type": "string", "examples": ["7d", "12h", "3600"]},
        "description": "Keep the batch this long after it finishes (default RESULTS_TTL, if set).",
    },
]


def upload_operation() -> dict[str, Any]:
    """POST /batch/upload."""
    return {
        "summary": "Upload a CSV (id,text) and start a batch",
        "description": "A browser's form submission (Accept: text/html) is answered with "
        "303 See Other to the batch's page instead, or with the form again when refused. "
        "The file may be gzip-compressed (a .csv.gz file part or raw body, or Content-Encoding).",
        "parameters": [
            CONTENT_ENCODING,
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
            webhooks.CALLBACK_URL_PARAMETER,
            *UPLOAD_LABEL_PARAMETERS,
            {
                "name": "Idempotency-Key",
                "in": "header",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Sent again with the same file and options within IDEMPOTENCY_TTL, "
                "the upload answers the first one's batch with Idempotent-Replayed: true (another "
                "file: 422; the first still in progress after 5 s: 409 with Retry-After).",
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
                            "callback_url": webhooks.CALLBACK_URL_PARAMETER["schema"],
                            "metadata": UPLOAD_LABEL_PARAMETERS[0]["schema"],
                            "expires_after": UPLOAD_LABEL_PARAMETERS[1]["schema"],
                        },
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "202": json_answer(
                ref("Batch"),
                "Accepted: the rows are staged and queued (or, replayed, the batch an earlier upload "
                "with the same Idempotency-Key made).",
                {
                    "Location": {"schema": {"type": "string"}, "description": "The batch's URL."},
                    "Idempotent-Replayed": {
                        "schema": {"const": "true"},
                        "description": "Present when this answers an earlier upload's batch.",
                    },
                },
            ),
            **problem_answers("400", "401", "408", "409", "413", "415", "422", "429", "503"),
        },
    }
