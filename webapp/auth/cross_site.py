"""Refuse state-changing requests that a page of another site made a browser send.

A page on another site can make a visitor's browser POST a form here (an
upload, a cancel, a sign-in), with the visitor's cookies when SameSite allows
them, or against a service that needs no token at all on a trusted network.
Browsers say where such a request comes from, and this check (the same as Go's
``http.CrossOriginProtection``) reads that before any view runs, for every
method but GET, HEAD and OPTIONS:

* ``Sec-Fetch-Site`` (every current browser sends it): ``same-origin`` or
  ``none`` (the user's own action, such as a bookmark) pass; ``same-site`` and
  ``cross-site`` are refused.
* otherwise ``Origin`` (older browsers): it passes when its host and port are
  the request's ``Host``; any other origin, and ``null``, is refused.
* with neither header the request passes: curl and scripts send none, and a
  page cannot make a browser leave both out.

A refused request gets a 403 problem ``cross-site-request`` whether or not it
carries a token, and its body is never read.
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
