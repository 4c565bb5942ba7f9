"""One line of a JSON Lines upload: parsed into its object, and JSON values made text.

A line is one JSON value (RFC 8259, strict: ``NaN`` and ``Infinity`` are not JSON, nor are raw
control characters inside a string) which must be an object; anything else is a :class:`LineProblem`
that sets the row aside. Numbers keep the text they were written with (``4.50`` stays ``4.50``,
``1e5`` stays ``1e5``), so a value reads as it would in a CSV export of the same data. A key written
twice in one object keeps its last value, as JavaScript's ``JSON.parse``, jq and Python do.

How a value becomes a cell (:func:`cell_text`): a string as it is; a number as written; ``true`` and
``false`` as those words; ``null`` as an empty cell; an object or an array as compact JSON (no
whitespace, non-ASCII characters as they are).
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring
from typing import Any


class JsonNumber(str):
    """A JSON number, held as the text it was written with (told apart from a string by its type)."""

    __slots__ = ()


class LineProblem(Exception):
    """Why a line cannot be a row: a row problem's reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _not_json(constant: str) -> Any:
    raise LineProblem("invalid_json", f"the line is not valid JSON: {constant} is not a JSON value")


_DECODER = json.JSONDecoder(parse_float=JsonNumber, parse_int=JsonNumber, parse_constant=_not_json)
#: The decoder's scanner, called directly: JSONDecoder.decode's two whitespace regexes cost a
#: quarter of a short line's parse.
_scan = _DECODER.scan_once
_WHITESPACE = " \t\r\n"

#: An escaped UTF-16 surrogate: a pair is one character, but a lone one cannot be stored as text.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def parsed_object(line: str) -> dict[str, Any]:
    """The object on ``line`` (with or without its line end); a LineProblem if it holds anything else."""
    start = 0 if line[:1] == "{" else len(line) - len(line.lstrip(_WHITESPACE))
    try:
        try:
            value, end = _scan(line, start)
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", line, stop.value) from None
        if end < len(line) and line[end:].strip(_WHITESPACE):
            raise json.JSONDecodeError(
                "Extra data", line, end + len(line[end:]) - len(line[end:].lstrip(_WHITESPACE))
            )
    except json.JSONDecodeError as exc:
        raise LineProblem(
            "invalid_json", f"the line is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except RecursionError:
        raise LineProblem("invalid_json", "the line is not valid JSON: it is nested too deeply") from None
    if type(value) is not dict:
        raise LineProblem("not_an_object", f"the line is {kind_of(value)}, not a JSON object")
    if "\\u" in line and _ESCAPED_SURROGATE.search(line):
        _check_surrogates(value)
    return value


def cell_text(value: Any) -> str:
    """A JSON value as a cell's text (see the module's docstring)."""
    if type(value) is str:
        return value
    if isinstance(value, JsonNumber):
        return str(value)
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    try:
        return _compact(value)
    except RecursionError:  # nested nearly as deep as the decoder allows
        raise LineProblem("invalid_json", "a value is nested too deeply") from None


def _compact(value: Any) -> str:
    if type(value) is str:
        return encode_basestring(value)
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode_basestring(k)}:{_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(item) for item in value) + "]"
    return "null" if value is None else "true" if value else "false"


def kind_of(value: Any) -> str:
    """What a JSON value is, for a row problem's detail ('a number', 'an array', ...)."""
    if isinstance(value, JsonNumber):
        return "a number"
    if type(value) is str:
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "an object"


def _check_surrogates(value: Any) -> None:
    """A LineProblem if a string of ``value`` (keys included) holds half of a surrogate pair."""
    try:
        _compact(value).encode("utf-8")
    except UnicodeEncodeError:
        raise LineProblem(
            "invalid_json", "the line escapes half of a UTF-16 surrogate pair (\\ud800-\\udfff alone)"
        ) from None
    except RecursionError:
        raise LineProblem("invalid_json", "the line is not valid JSON: it is nested too deeply") from None
