"""Refuse state-changing requests that a page of another site made a browser send.

A page elsewhere can make a visitor's browser POST here (an upload, a cancel, a sign-in), with the
visitor's cookies when SameSite allows them, or to a service that needs no key on a trusted
network. Before any view runs, every method but GET, HEAD and OPTIONS is checked as Go's
``http.CrossOriginProtection`` does: ``Sec-Fetch-Site`` (every current browser sends it) passes
when ``same-origin`` or ``none``; without it, ``Origin`` (older browsers) passes when its host and
port are the request's ``Host``; with neither the request passes (curl and scripts send none, and
a page cannot make a browser leave both out). A refused request is a 403 ``cross-site-request``,
with or without a key, and its body is never read.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, request

from webapp.problems import Problem

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def init_app(app: Flask) -> None:
    """Check every request before anything else reads it."""
    app.before_request(refuse_cross_site)


def refuse_cross_site() -> None:
    """Raise the 403 problem when a browser sends a state-changing request from another site."""
    if request.method in SAFE_METHODS:
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site.strip().lower() in ALLOWED_FETCH_SITES:
            return
        raise _refused(f"Sec-Fetch-Site is {fetch_site!r}")
    origin = request.headers.get("Origin")
    if origin is None or _host_of(origin) == request.host.lower():
        return
    raise _refused(f"Origin {origin!r} is not this site")


def _host_of(origin: str) -> str:
    try:
        return urlsplit(origin.strip()).netloc.lower()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""


def _refused(reason: str) -> Problem:
    log.warning("refused a cross-site %s %s: %s", request.method, request.path, reason)
    return Problem(
        403,
        "Cross-site request refused",
        f"This service does not accept a {request.method} sent by another site's page ({reason}). "
        "Use this service's own pages, or send the request from a script or curl.",
        "cross-site-request",
    )
