"""What every part of the OpenAPI document builds with: references, answers and parameters."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A reference to one of the document's object schemas."""
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
    """The shared problem+json answers for these status codes."""
    return {code: {"$ref": f"#/components/responses/Problem{code}"} for code in codes}


def query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """A query parameter."""
    parameter = {"name": name, "in": "query", "schema": schema}
    if description is not None:
        parameter["description"] = description
    return parameter


#: The path parameter of every /batch/{batch_id} path.
BATCH_ID = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The id the upload answered with (batch-<32 hex digits>).",
}
