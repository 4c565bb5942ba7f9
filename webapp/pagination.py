"""The one paginator: keyset pages of results, set-aside rows and batches, for the API and the pages.

A :class:`Listing` says how one list is read (a function of :mod:`core.batches`
that takes a keyset position) and how a row's position is written. A page is
asked for by ``after=`` or ``before=`` a signed cursor, or by ``page=P`` where
the list is numbered densely or can ``locate`` the position; every form ends as
one index range, never a skip-and-count of rows. Cursors are bound to their list
(the owner, and the scope: the list's name and filters), so one the service hands
out works wherever that list is served. A page stops early at PAGE_BYTES of
text and is read in rounds of ROUND_CHARS, so memory does not grow with
``per_page``. The rules as clients see them: docs/api.md (Results), docs/security.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import psycopg
from flask import Response, jsonify
from itsdangerous import BadSignature, URLSafeSerializer

from webapp.problems import Problem

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
#: A page stops before its rows' texts, ids and errors, as JSON strings, pass this many bytes.
PAGE_BYTES = 1_000_000
#: Rows read per round while a page is built, counted at the listing's largest row.
ROUND_CHARS = 4_000_000
MAX_ROW_NUMBER = 2**31 - 1  # row_number is a PostgreSQL integer

Row = TypeVar("Row")


def bad_parameter(detail: str) -> Problem:
    return Problem(400, "Invalid query parameter", detail, "invalid-parameter")


def positive_int(args: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """A whole number from 1 to ``maximum`` from the query string; 400 otherwise."""
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise bad_parameter(f"{name} must be a positive integer, got {raw!r}.")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise bad_parameter(f"{name} must be between 1 and {maximum}, got {value}.")
    return value


def choice(args: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    """One of ``allowed`` from the query string, or None when absent; 400 otherwise (empty too)."""
    value = args.get(name)
    if value is not None and value not in allowed:
        raise bad_parameter(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")
    return value


#: What a Listing's ``locate`` answers for a page past the end of the list ...
PAST_THE_END = object()
#: ... and for a page it cannot find yet (the view answers 503 with Retry-After: ask again).
NOT_YET = object()


@dataclass(frozen=True)
class Listing(Generic[Row]):
    """One list the service pages through."""

    #: The list's key in a page's JSON, and the first part of its cursors' scope.
    name: str
    #: Reads rows: (conn, owner object, position after or None, position before or None, limit, filters).
    fetch: Callable[..., list[Row]]
    #: A row's keyset position, as a cursor keeps it (JSON: an int or a list).
    position: Callable[[Row], Any]
    #: Checks a position decoded from a cursor (it was signed by us, but by an older release maybe).
    valid_position: Callable[[Any], bool]
    #: Rows are numbered densely from 1 and the position is that number, so ``page=P`` works.
    numbered: bool = False
    #: For a list that is not numbered: (conn, owner object, rows to skip, filters) -> the position
    #: after which page P starts (None: the start; PAST_THE_END), so ``page=P`` works too.
    locate: Callable[..., Any] | None = None
    #: ``fetch`` can read backwards from a position, so ``before=`` works.
    backward: bool = False
    #: The bytes a row puts on a page (its texts as JSON strings), counted against PAGE_BYTES.
    weight: Callable[[Row], int] = lambda _row: 0
    #: The most characters a row can hold, which sizes the rounds of reading.
    largest_row: int = 1_000
    #: Query parameters this list ignores rather than refuses: clients send them, and a 400 would break them.
    ignores: tuple[str, ...] = ()
    #: The scope of its cursors for some filters; by default the name, then ``:value`` per filter.
    scope_of: Callable[[Mapping[str, str]], str] | None = None


@dataclass(frozen=True)
class PageRequest:
    per_page: int
    after: Any = None
    before: Any = None
    page: int | None = None  # set in the page-number form
    skip: int = 0  # rows before the page, for a list that locates page P (Listing.locate)


@dataclass(frozen=True)
class Page(Generic[Row]):
    listing: Listing[Row]
    items: list[Row]
    request: PageRequest
    filters: dict[str, str]
    next_cursor: str | None  # the rows after the last item, if there are any
    previous_cursor: str | None  # the rows before the first item, if there are any
    cut: bool = False  # stopped before per_page at PAGE_BYTES
    not_yet: bool = False  # the list cannot find this page yet (Listing.locate): retry shortly


def _serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt="keyset-cursor")


def scope(listing: Listing[Any], filters: Mapping[str, str]) -> str:
    """What a cursor of this list with these filters is bound to, e.g. ``results:positive``."""
    if listing.scope_of is not None:
        return listing.scope_of(filters)
    return listing.name + "".join(f":{value}" for _, value in sorted(filters.items()))


def encode_cursor(key: str, owner: str, scope: str, position: Any) -> str:
    return _serializer(key).dumps([owner, scope, position])


def _decode_cursor(key: str, token: str, owner: str, scope: str, parameter: str) -> Any:
    try:
        cursor_owner, cursor_scope, position = _serializer(key).loads(token)
    except (BadSignature, ValueError, TypeError) as exc:
        raise bad_parameter(f"The cursor in {parameter!r} is not valid; use the links as given.") from exc
    if cursor_owner != owner or cursor_scope != scope:
        raise bad_parameter(f"The cursor in {parameter!r} belongs to another batch or list.")
    return position


def parse_page_request(
    args: Mapping[str, str], listing: Listing[Any], owner: str, filters: Mapping[str, str], key: str
) -> PageRequest:
    """``per_page`` and at most one of ``after``, ``before``, ``page``; a bad value is a 400."""
    per_page = positive_int(args, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    given = [name for name in ("after", "before", "page") if name in args and name not in listing.ignores]
    if len(given) > 1:
        raise bad_parameter(f"Use only one of after, before and page (got {', '.join(given)}).")
    parameter = given[0] if given else "page"
    if parameter == "before" and not listing.backward:
        raise bad_parameter("This list is read forwards only: follow next_cursor (after=).")
    if parameter == "page":
        page = positive_int(args, "page", 1, MAX_ROW_NUMBER) if given else 1
        if not listing.numbered and listing.locate is not None:
            return PageRequest(per_page, page=page, skip=(page - 1) * per_page)
        if not listing.numbered:
            if page > 1:
                raise bad_parameter(
                    "This list has no page numbers with these filters: start at page 1 and follow "
                    "next_cursor (after=) from there."
                )
            return PageRequest(per_page, page=1)
        if (page - 1) * per_page > MAX_ROW_NUMBER:
            raise bad_parameter(f"page {page} is beyond any possible batch at per_page={per_page}.")
        return PageRequest(per_page, after=(page - 1) * per_page, page=page)
    position = _decode_cursor(key, args[parameter], owner, scope(listing, filters), parameter)
    if not listing.valid_position(position):
        raise bad_parameter(f"The cursor in {parameter!r} is not valid; use the links as given.")
    return PageRequest(per_page, **{parameter: position})


def read_page(
    conn: psycopg.Connection,
    listing: Listing[Row],
    subject: Any,
    owner: str,
    request: PageRequest,
    filters: Mapping[str, str],
    key: str,
    *,
    growing: bool = False,
) -> Page[Row]:
    """The page ``request`` asks for: ``per_page`` rows, or fewer once they pass PAGE_BYTES.

    Read in rounds (see the module's docstring), each with one row more than it
    needs, to know whether another follows. ``growing``: rows may still be added
    after the end (a running batch's results), so the last page read forwards
    still has a next_cursor, from which a client asks again later.
    """
    after, before = request.after, request.before
    if request.skip:
        after = listing.locate(conn, subject, request.skip, filters)  # type: ignore[misc]
        if after is PAST_THE_END:
            return Page(listing, [], request, dict(filters), None, None)
        if after is NOT_YET:
            return Page(listing, [], request, dict(filters), None, None, not_yet=True)
    round_rows = max(1, ROUND_CHARS // max(1, listing.largest_row))
    rows: list[Row] = []
    weight = 0
    extra = cut = False
    while len(rows) < request.per_page:
        limit = min(request.per_page - len(rows), round_rows) + 1
        fetched = listing.fetch(conn, subject, after, before, limit, filters)
        extra = len(fetched) == limit
        for row in fetched[: limit - 1]:
            weight += listing.weight(row)
            if rows and weight > PAGE_BYTES:
                extra = cut = True
                break
            rows.append(row)
        if cut or not extra:
            break
        if before is None:
            after = listing.position(rows[-1])
        else:
            before = listing.position(rows[-1])
    if request.before is None:
        # A Previous link only where the list can be read backwards (before=).
        more_after, more_before = extra, listing.backward and bool(request.after or request.skip)
    else:
        rows.reverse()  # read backwards from the position, shown forwards
        more_after, more_before = True, extra
    bound = scope(listing, filters)
    next_cursor = previous_cursor = None
    if rows and more_after:
        next_cursor = encode_cursor(key, owner, bound, listing.position(rows[-1]))
    elif growing and request.before is None:
        next_cursor = encode_cursor(key, owner, bound, listing.position(rows[-1]) if rows else after or 0)
    if rows and more_before:
        previous_cursor = encode_cursor(key, owner, bound, listing.position(rows[0]))
    return Page(listing, rows, request, dict(filters), next_cursor, previous_cursor, cut)


def page_response(page: Page[Any], url: str, **head: Any) -> Response:
    """A page as the API answers it: ``head`` members, the items, ``next_cursor`` and a Link header.

    The next link keeps the page-number form when the request used it and the list has numbers,
    unless the page was cut short at PAGE_BYTES: page P + 1 would then skip rows.
    """
    body = {**head, "page": page.request.page, "per_page": page.request.per_page, **page.filters}
    body[page.listing.name] = [item.to_json() for item in page.items]
    body["next_cursor"] = page.next_cursor
    response = jsonify(body)
    if page.next_cursor:
        numbered = page.listing.numbered or page.listing.locate is not None
        if page.request.page is not None and numbered and not page.cut:
            params: dict[str, Any] = {"page": page.request.page + 1}
        else:
            params = {"after": page.next_cursor}
        params.update(per_page=page.request.per_page, **page.filters)
        response.headers["Link"] = f'<{url}?{urlencode(params)}>; rel="next"'
    return response
