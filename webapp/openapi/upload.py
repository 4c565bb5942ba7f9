"""The upload's operation in the OpenAPI document: its parameters, body, headers and answers."""

from __future__ import annotations

from typing import Any

from webapp.openapi.common import json_answer, problem_answers, query, ref
from webapp.openapi.webhooks import CALLBACK_URL_PARAMETER
from webapp.upload.file_rows import JSONL_MEDIA_TYPES, XLSX_MEDIA_TYPE
from webapp.upload.request_body import BLANK_MEANS_UNSET

#: gzip uploads (webapp.upload.compression): the body's Content-Encoding.
CONTENT_ENCODING = {
    "name": "Content-Encoding",
    "in": "header",
    "schema": {"enum": ["gzip", "x-gzip", "identity"]},
    "description": "gzip: the body (the file, or the whole form) is gzip-compressed; it is inflated as it "
    "streams, and MAX_UPLOAD_BYTES and MAX_ROWS count the inflated data. Any other coding is a 415. "
    "A file that is itself gzip (reviews.csv.gz, by its magic bytes) is inflated too, without it.",
}
#: The upload's options: query parameters, or form fields before the file.
STRICT = query("strict", {"type": "string"}, "true: reject the file at its first row problem.")
ENCODING = query("encoding", {"type": "string"}, "The file's text encoding (default UTF-8), e.g. cp1252.")
METADATA = query(
    "metadata",
    {"type": "string", "contentMediaType": "application/json"},
    "Labels: a JSON object of up to 16 string pairs (key up to 64 characters, value up "
    "to 512); a form field before the file, or this parameter.",
)
EXPIRES_AFTER = query(
    "expires_after",
    {"type": "string", "examples": ["7d", "12h", "3600"]},
    "Keep the batch this long after it finishes (default RESULTS_TTL, if set).",
)
SHEET = query(
    "sheet",
    {"type": "string"},
    "An .xlsx workbook's sheet to read (default: its first worksheet); an unknown one is a 400 "
    "listing the sheets, and a CSV or JSON Lines file with it a 400.",
)
TEXT_COLUMN = query(
    "text_column",
    {"type": "string", "minLength": 1, "maxLength": 255, "examples": ["body"]},
    "The column (a JSON Lines file's key) of the text to score (default 'text'); trimmed, "
    "case-insensitive. A file without it is a 400 missing-column listing the file's columns.",
)
ID_COLUMN = query(
    "id_column",
    {"type": "string", "minLength": 1, "maxLength": 255, "examples": ["ticket_id"]},
    "The column (a JSON Lines file's key) of each row's id (default 'id', else the line number); "
    "trimmed, case-insensitive. A file without it is a 400 missing-column listing the file's columns.",
)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Sent again with the same file and options within IDEMPOTENCY_TTL, "
    "the upload answers the first one's batch with Idempotent-Replayed: true (another "
    "file: 422; the first still in progress after 5 s: 409 with Retry-After).",
}
OPTIONS = [TEXT_COLUMN, ID_COLUMN, STRICT, ENCODING, SHEET, CALLBACK_URL_PARAMETER, METADATA, EXPIRES_AFTER]


def _form_field(option: dict[str, Any]) -> dict[str, Any]:
    """An option's schema as a form field before the file."""
    if option["name"] not in BLANK_MEANS_UNSET:
        return option["schema"]
    schema = {key: value for key, value in option["schema"].items() if key != "minLength"}
    return {**schema, "description": "Empty or blank: not given, as a browser sends a text field left blank."}


def upload_operation() -> dict[str, Any]:
    """POST /batch/upload."""
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "description": "A CSV; a JSON Lines file (a part named *.jsonl or *.ndjson, or of "
                "the type application/jsonl or application/x-ndjson); or an .xlsx workbook (a part "
                "named *.xlsx or of its media type).",
            },
            **{option["name"]: _form_field(option) for option in OPTIONS},
        },
    }
    return {
        "summary": "Upload a CSV, JSON Lines or .xlsx file (id, text) and start a batch",
        "description": "A browser's form submission (Accept: text/html) is answered with "
        "303 See Other to the batch's page instead, or with the form again when refused. "
        "The file may be gzip-compressed (a .csv.gz or .jsonl.gz file part or raw body, or "
        "Content-Encoding). A JSON Lines file holds one JSON object per line: its keys are the "
        "columns, its bad lines are set aside by line number. An .xlsx workbook is read as its "
        "first worksheet, or the one sheet names.",
        "parameters": [CONTENT_ENCODING, *OPTIONS, IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "text/csv": {"schema": {"type": "string"}},
                **{media_type: {"schema": {"type": "string"}} for media_type in JSONL_MEDIA_TYPES},
                XLSX_MEDIA_TYPE: {"schema": {"type": "string", "contentMediaType": XLSX_MEDIA_TYPE}},
            },
        },
        "responses": {
            "202": json_answer(
                ref("Batch"),
                "Accepted: the rows are stored and queued (or, replayed, the batch an earlier upload "
                "with the same Idempotency-Key made).",
                {
                    "Location": {"schema": {"type": "string"}, "description": "The batch's URL."},
                    "Idempotent-Replayed": {
                        "schema": {"const": "true"},
                        "description": "Present when this answers an earlier upload's batch.",
                    },
                },
            ),
            **problem_answers("400", "401", "408", "409", "413", "415", "422", "429", "503", "507"),
        },
    }
