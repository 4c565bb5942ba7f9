"""The errors a client's request can cause in core, before anyone knows it came over HTTP.

Core raises these; :mod:`webapp.problems` is the one place that turns them into
problem+json answers (NotFound 404, Conflict 409, InvalidInput 400, NotReady 503, ...). ``slug``
names the problem type (``/problems/<slug>``) and ``extra`` adds members to the body.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Something the client can act on."""

    def __init__(
        self, title: str, detail: str, slug: str, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail
        self.slug = slug
        self.retry_after = retry_after  # seconds worth waiting before trying again, when known
        self.extra = extra


class NotFound(ServiceError):
    """No such thing, or not one the caller may see (the two are never told apart)."""


class Conflict(ServiceError):
    """The thing exists, but its state does not allow this now."""


class InvalidInput(ServiceError):
    """A value the client sent is not acceptable; the detail says which and why."""


class Forbidden(ServiceError):
    """The caller is known, but this needs an admin key."""


class OverQuota(ServiceError):
    """The caller's share is used up for now; retry after ``retry_after`` seconds."""


class NotReady(ServiceError):
    """Being prepared for this very request; retry after ``retry_after`` seconds (503)."""


class Unprocessable(ServiceError):
    """Well-formed, but it contradicts what the service already holds (422)."""
