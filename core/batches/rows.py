"""A batch's rows, as code: a scored row (``Result``), a row set aside at upload (``RowError``),
their JSON, the downloads' columns, and why a row can be set aside.

``Result`` and ``RowError`` are read from ``batch_results``/``batch_inputs`` and
``batch_row_errors`` with psycopg's ``class_row``; their :class:`~core.jsonshape.Member` tuples
make the API's items and the OpenAPI document's schemas (:data:`ROW_SCHEMAS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.jsonshape import Member, dump, object_schema

#: The labels a scored row can carry, in the order summaries show them.
SENTIMENTS = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class Result:
    """One row of ``batch_results`` as pages and exports read it."""

    row_number: int
    line_number: int | None
    client_id: str
    text: str
    sentiment: str | None
    score: float | None
    compound: float | None
    pos: float | None
    neu: float | None
    neg: float | None
    error: str | None
    fields: dict[str, str] | None = None  # the kept columns (Batch.field_names) and their values

    def to_json(self) -> dict[str, Any]:
        """A results page's item."""
        return dump(self, RESULT_MEMBERS)

    def to_export_json(self) -> dict[str, Any]:
        """A ``results.ndjson`` line: the file's columns (see :data:`EXPORT_COLUMNS`), and ``fields``
        when the file had other columns."""
        line = {column: getattr(self, field) for column, field in EXPORT_COLUMNS.items()}
        if self.fields is not None:
            line["fields"] = self.fields
        return line


RESULT_MEMBERS = (
    Member("row", lambda r: r.row_number, {"type": "integer", "minimum": 1}),
    Member("line", lambda r: r.line_number, {"type": ["integer", "null"]}),
    Member("id", lambda r: r.client_id, {"type": "string"}),
    Member("text", lambda r: r.text, {"type": "string"}),
    Member("sentiment", lambda r: r.sentiment, {"enum": [*SENTIMENTS, None]}),
    Member("score", lambda r: r.score, {"type": ["number", "null"], "minimum": 0, "maximum": 1}),
    Member("compound", lambda r: r.compound, {"type": ["number", "null"], "minimum": -1, "maximum": 1}),
    Member(
        "error", lambda r: r.error, {"type": "string", "description": "Why scoring this row failed."}, True
    ),
    Member(
        "fields",
        lambda r: r.fields,
        {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "The file's other columns and this row's values, in file order (present "
            "when the file had columns besides the text and the id).",
        },
        True,
    ),
)

#: The columns of both downloads, in order, and the Result field each comes from.
EXPORT_COLUMNS = {
    "id": "client_id",
    "text": "text",
    "sentiment": "sentiment",
    "score": "score",
    "compound": "compound",
    "pos": "pos",
    "neu": "neu",
    "neg": "neg",
    "error": "error",
}

#: Why an upload sets a row aside; the schema's CHECK constraint lists the same.
ROW_PROBLEMS = (
    "wrong_field_count",
    "empty_text",
    "text_too_long",
    "nul_character",
    "id_too_long",
    "invalid_json",
    "not_an_object",
    "missing_text",
    "wrong_type",
    "duplicate_key",
)


@dataclass(frozen=True)
class RowError:
    """One row of ``batch_row_errors``: a row the upload set aside."""

    error_number: int
    line_number: int
    client_id: str | None
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return dump(self, ROW_ERROR_MEMBERS)


ROW_ERROR_MEMBERS = (
    Member("error", lambda e: e.error_number, {"type": "integer", "minimum": 1}),
    Member("line", lambda e: e.line_number, {"type": "integer"}),
    Member("id", lambda e: e.client_id, {"type": ["string", "null"]}),
    Member("reason", lambda e: e.reason, {"enum": list(ROW_PROBLEMS)}),
    Member("detail", lambda e: e.detail, {"type": "string"}),
)

#: The JSON Schemas of the rows, for the OpenAPI document (:data:`core.batches.model.SCHEMAS`).
ROW_SCHEMAS = {
    "Result": object_schema(RESULT_MEMBERS, "One scored row, in file order."),
    "RowError": object_schema(ROW_ERROR_MEMBERS, "One row the upload set aside, and why."),
}
