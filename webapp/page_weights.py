"""How many bytes a row puts on a page (its texts as JSON strings), counted against PAGE_BYTES."""

from __future__ import annotations

from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

from core.batches import Result, RowError


def json_length(text: str | None) -> int:
    """Bytes of ``text`` as a JSON string (the pages' JSON escapes every non-ASCII character)."""
    return len(encode_basestring_ascii(text)) if text else 0


def result_weight(result: Result) -> int:
    weight = json_length(result.text) + json_length(result.client_id) + json_length(result.error)
    if result.fields:
        weight += sum(json_length(name) + json_length(value) for name, value in result.fields.items())
    return weight


def error_weight(error: RowError) -> int:
    return json_length(error.client_id) + json_length(error.detail)
