"""Declare a JSON object's members once; get both the object and its JSON Schema from it.

A typed row (a dataclass read with ``class_row``) lists its members as
:class:`Member` entries: the JSON name, how to read it off the row, and its
schema. :func:`dump` builds the JSON object the API and the pages send;
:func:`object_schema` builds the schema the OpenAPI document serves. Adding a
member in one place therefore changes both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
NULLABLE_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


@dataclass(frozen=True)
class Member:
    """One member of a JSON object: its name, its value read off the source, its schema."""

    name: str
    read: Callable[[Any], Any]
    schema: dict[str, Any]
    #: An optional member is left out of the object while its value is None.
    optional: bool = False


def iso(moment: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC with a Z, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def dump(source: Any, members: Sequence[Member]) -> dict[str, Any]:
    """The JSON object of ``source``."""
    body: dict[str, Any] = {}
    for member in members:
        value = member.read(source)
        if value is not None or not member.optional:
            body[member.name] = value
    return body


def object_schema(members: Sequence[Member], description: str) -> dict[str, Any]:
    """The JSON Schema of the objects :func:`dump` makes from ``members``."""
    return {
        "type": "object",
        "description": description,
        "required": [m.name for m in members if not m.optional],
        "properties": {m.name: m.schema for m in members},
    }
