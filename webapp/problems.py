"""Errors as RFC 9457 problem details (``application/problem+json``).

This is the one place that turns exceptions into HTTP answers: our own
:class:`Problem`, werkzeug's HTTP errors (404, 405, 413, ...), and database
outages (503 with ``Retry-After``). Anything else is a bug: it is logged with
its traceback and answered with a generic 500 problem, never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, json
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

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


def problem_response(problem: Problem) -> Response:
    body = {
        "type": f"/problems/{problem.slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extra,
    }
    response = Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _from_http_exception(exc: HTTPException) -> Response:
    code = exc.code or 500
    slug = (exc.name or "error").lower().replace(" ", "-")
    headers = {}
    if code == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return problem_response(Problem(code, exc.name or "Error", exc.description or "", slug, headers))


def _database_unavailable(exc: Exception) -> Response:
    log.warning("database unavailable: %s", exc)
    return problem_response(
        Problem(
            503,
            "Service Unavailable",
            "The database is not reachable right now; retry shortly.",
            "database-unavailable",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    )


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem_response(
        Problem(500, "Internal Server Error", "An unexpected error occurred.", "internal-error")
    )


def init_app(app: Flask) -> None:
    """Register the error handlers on the app."""
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(psycopg.OperationalError, _database_unavailable)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
