"""Keyset pagination parameters and signed cursors for result pages.

Both forms end as one index range on ``(batch_id, row_number)``:
``?page=P&per_page=N`` starts after row ``(P - 1) * N`` (row numbers of a
completed batch are dense, 1..total), and ``?after=<cursor>`` starts after
the row the cursor names. Cursors are signed (itsdangerous, a Flask
dependency) and bound to their batch, so an edited or foreign cursor is
rejected with 400 instead of silently serving some other page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from webapp.problems import Problem

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
MAX_ROW_NUMBER = 2**31 - 1  # row_number is a PostgreSQL integer


@dataclass(frozen=True)
class PageRequest:
    after_row: int
    per_page: int
    page: int | None  # None in the cursor form


def bad_parameter(detail: str) -> Problem:
    return Problem(400, "Invalid query parameter", detail, "invalid-parameter")


def _positive_int(args: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise bad_parameter(f"{name} must be a positive integer, got {raw!r}.")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise bad_parameter(f"{name} must be between 1 and {maximum}, got {value}.")
    return value


def parse_per_page(args: Mapping[str, str]) -> int:
    return _positive_int(args, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)


def _serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt="keyset-cursor")


def encode_cursor(key: str, owner: str, position: Any, scope: str) -> str:
    """A signed cursor: the last position of a page of ``scope`` (e.g. results) of ``owner``."""
    return _serializer(key).dumps([owner, scope, position])


def decode_cursor(key: str, token: str, owner: str, scope: str, parameter: str = "after") -> Any:
    """The position a cursor names; 400 if it was edited or belongs to another list."""
    try:
        cursor_owner, cursor_scope, position = _serializer(key).loads(token)
    except (BadSignature, ValueError, TypeError) as exc:
        raise bad_parameter(f"The cursor in {parameter!r} is not valid; use the links as given.") from exc
    if cursor_owner != owner or cursor_scope != scope:
        raise bad_parameter(
            f"The cursor in {parameter!r} belongs to another batch or list, not these {scope}."
        )
    return position


def parse_page_request(args: Mapping[str, str], public_id: str, key: str, scope: str) -> PageRequest:
    """Validate ``page``/``per_page``/``after``; a bad value is a 400 problem."""
    per_page = parse_per_page(args)
    if "after" in args:
        if "page" in args:
            raise bad_parameter("Use either page or after, not both.")
        last_row = decode_cursor(key, args["after"], public_id, scope)
        if not isinstance(last_row, int) or last_row < 0:
            raise bad_parameter("The cursor in 'after' is not valid; use next_cursor as given.")
        return PageRequest(after_row=last_row, per_page=per_page, page=None)
    page = _positive_int(args, "page", 1, MAX_ROW_NUMBER)
    after_row = (page - 1) * per_page
    if after_row > MAX_ROW_NUMBER:
        raise bad_parameter(f"page {page} is beyond any possible batch at per_page={per_page}.")
    return PageRequest(after_row=after_row, per_page=per_page, page=page)
