"""Content negotiation: one URL answers browsers with a page and API clients with JSON.

A request counts as a browser's when its ``Accept`` header names ``text/html``
and prefers it to JSON, as every browser's navigation and form submission does.
curl sends ``*/*`` and scripts usually send nothing or ``application/json``:
they get exactly the JSON API.
"""

from __future__ import annotations

from flask import Response, request


def wants_html() -> bool:
    """A browser navigation: it names text/html and prefers it to JSON (curl's */* does not count)."""
    accept = request.accept_mimetypes
    named = any(value == "text/html" for value, _ in accept)
    return named and accept.best_match(["text/html", "application/json"]) == "text/html"


def negotiated(response: Response) -> Response:
    """Mark a response of a negotiated URL, so caches keep the page and the JSON apart."""
    response.vary.add("Accept")
    return response
