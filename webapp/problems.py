"""Errors as RFC 9457 problem details (``application/problem+json``).

This is the one place that turns exceptions into HTTP answers: our own
:class:`Problem`, core's :mod:`core.errors` (not found 404, conflict 409,
invalid input 400), werkzeug's HTTP errors (404, 405, 413, ...), database
outages and statements cancelled by ``statement_timeout`` (503 with
``Retry-After``), and a full disk, the database's or the web worker's own
(:mod:`core.disk_full`: 507 ``storage-full`` with ``Retry-After``; nothing was
stored). Anything else is a bug: it is logged with its traceback
and answered with a generic 500 problem, never a stack trace.
A browser (see :mod:`webapp.negotiation`) gets the same problem as an HTML
page with the same status code: a 404 page for an unknown batch, say.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, json, render_template
from gunicorn.http.errors import NoMoreData, ParseException
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from core.disk_full import RETRY_AFTER_SECONDS as DISK_FULL_RETRY_AFTER_SECONDS
from core.disk_full import first_line, is_disk_full, public_reason
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    OverQuota,
    ServiceError,
    Unprocessable,
)
from core.jsonshape import Member, dump
from webapp.negotiation import negotiated, wants_html
from webapp.server.client_limits import ClientTimeout

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5


class Problem(Exception):
    """An error the client can act on. ``slug`` names its type: /problems/<slug>."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        slug: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers or {}
        self.extra = extra


#: The members every problem's JSON has (its ``extra`` ones follow), and their schemas.
PROBLEM_MEMBERS = (
    Member("type", lambda p: f"/problems/{p.slug}", {"type": "string"}),
    Member("title", lambda p: p.title, {"type": "string"}),
    Member("status", lambda p: p.status, {"type": "integer"}),
    Member("detail", lambda p: p.detail, {"type": "string"}),
)


def problem_response(problem: Problem) -> Response:
    body = {**dump(problem, PROBLEM_MEMBERS), **problem.extra}
    response = Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def answer(problem: Problem) -> Response:
    """The problem as a page for a browser, as problem+json for everyone else."""
    if wants_html():
        try:
            page = render_template("error.html", problem=problem)
        except Exception:  # a broken page must not hide the error itself
            log.exception("could not render the error page")
        else:
            response = Response(page, status=problem.status, mimetype="text/html")
            response.headers.extend(problem.headers)
            return negotiated(response)
    return negotiated(problem_response(problem))


def _from_http_exception(exc: HTTPException) -> Response:
    code = exc.code or 500
    slug = (exc.name or "error").lower().replace(" ", "-")
    headers = {}
    if code == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return answer(Problem(code, exc.name or "Error", exc.description or "", slug, headers))


#: The status code of each kind of core error.
SERVICE_ERROR_STATUS = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    Forbidden: 403,
    OverQuota: 429,
    Unprocessable: 422,
    NotReady: 503,
}


def problem_of(exc: ServiceError) -> Problem:
    """The problem a core error is to a client: its status code, and Retry-After when it has one."""
    status = next(code for kind, code in SERVICE_ERROR_STATUS.items() if isinstance(exc, kind))
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Problem(status, exc.title, exc.detail, exc.slug, headers, **exc.extra)


def _from_service_error(exc: ServiceError) -> Response:
    return answer(problem_of(exc))


def _retry_shortly(title: str, detail: str, slug: str) -> Response:
    """A 503 whose cause passes by itself: retry after RETRY_AFTER_SECONDS."""
    return answer(Problem(503, title, detail, slug, {"Retry-After": str(RETRY_AFTER_SECONDS)}))


def storage_full(exc: BaseException) -> Problem:
    """The problem a write refused for a full disk is: the database's, or the web worker's spool
    (logged: a full disk is the operator's to fix)."""
    log.warning("write refused, the disk is full: %s", first_line(exc))
    where = "the web server's temporary files" if isinstance(exc, OSError) else "the database"
    detail = (
        f"There is no room left on the disk of {where} ({public_reason(exc)}), so nothing was stored; "
        f"retry once space is freed (in {DISK_FULL_RETRY_AFTER_SECONDS} s, say)."
    )
    headers = {"Retry-After": str(DISK_FULL_RETRY_AFTER_SECONDS)}
    return Problem(507, "Insufficient Storage", detail, "storage-full", headers)


def _storage_full(exc: BaseException) -> Response:
    return answer(storage_full(exc))


def _database_unavailable(exc: Exception) -> Response:
    if is_disk_full(exc):  # 53100, or an I/O error saying ENOSPC: an OperationalError too
        return _storage_full(exc)
    log.warning("database unavailable: %s", exc)
    detail = "The database is not reachable right now; retry shortly."
    return _retry_shortly("Service Unavailable", detail, "database-unavailable")


def _query_timeout(exc: Exception) -> Response:
    # statement_timeout (STATEMENT_TIMEOUT, or BULK_STATEMENT_TIMEOUT for uploads and exports).
    log.warning("statement cancelled: %s", exc)
    detail = "The database did not answer this request in time, so it was cancelled; retry shortly."
    return _retry_shortly("Query took too long", detail, "query-timeout")


def _broken_body(exc: Exception) -> Response:
    log.info("request body broken or cut short: %s", exc)
    detail = "The request body is malformed or ended before it was complete."
    return answer(Problem(400, "Invalid request body", detail, "truncated-body"))


def _client_timeout(exc: TimeoutError) -> Response:
    # The web worker (webapp.server.worker) cut off a client too slow sending a body a view was reading.
    detail = str(exc) if isinstance(exc, ClientTimeout) else "The client was too slow sending the request."
    return answer(Problem(408, "Request Timeout", detail, "client-timeout"))


def _unexpected(exc: Exception) -> Response:
    if is_disk_full(exc):  # an OSError ENOSPC (the spool), or a database error of class XX saying so
        return _storage_full(exc)
    log.exception("unhandled error")
    return answer(Problem(500, "Internal Server Error", "An unexpected error occurred.", "internal-error"))


def init_app(app: Flask) -> None:
    """Register the error handlers on the app."""
    app.register_error_handler(Problem, answer)
    app.register_error_handler(ServiceError, _from_service_error)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(psycopg.errors.QueryCanceled, _query_timeout)
    app.register_error_handler(psycopg.OperationalError, _database_unavailable)
    # An InternalError, not an OperationalError: PostgreSQL ended a session left idle in a
    # transaction for IDLE_IN_TRANSACTION_TIMEOUT; the pool replaces the connection.
    app.register_error_handler(psycopg.errors.IdleInTransactionSessionTimeout, _database_unavailable)
    # Also an InternalError: the server is read-only (a standby, or a primary demoted or fenced by a
    # failover); the pool has closed that session (webapp.db), and the next one finds the primary.
    app.register_error_handler(psycopg.errors.ReadOnlySqlTransaction, _database_unavailable)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(TimeoutError, _client_timeout)
    # A body broken or cut short while a view other than the upload reads it (a form at /login):
    # gunicorn's parser raises these from inside the read.
    app.register_error_handler(ParseException, _broken_body)
    app.register_error_handler(NoMoreData, _broken_body)
    app.register_error_handler(Exception, _unexpected)
