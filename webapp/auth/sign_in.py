"""Sign-in: the check every request passes, the login page, and logout.

Once an API key exists (or API_TOKEN is set), every endpoint but the health checks, static files
and the login page needs a key. :mod:`webapp.auth.callers` finds the caller; without one, an API
client gets a 401 with ``WWW-Authenticate`` and a browser is sent to ``/login``, which asks for
the key once and starts a server-side session (:mod:`webapp.auth.sessions`), ending the one the
browser had; ``POST /logout`` ends it in the database. Wrong keys are rate-limited per address and
credential family (:mod:`webapp.auth.login_limit`).
With no key and no API_TOKEN the service is one user's local tool: everything is open.
Every state-changing request first passes the cross-site check (:mod:`webapp.auth.cross_site`);
after sign-in the browser goes back to ``next`` only if it is a path on this site (:func:`safe_next`).
"""

from __future__ import annotations

import logging
import unicodedata
from urllib.parse import unquote, urlencode, urlsplit

from flask import Blueprint, Flask, Response, g, redirect, render_template, request, url_for

from core.settings import Settings
from webapp.auth import callers, cross_site, login_limit, sessions
from webapp.db import get_pool, settings
from webapp.health import PUBLIC_ENDPOINTS
from webapp.negotiation import wants_html

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

OPEN_ENDPOINTS = PUBLIC_ENDPOINTS | {"auth.login", "auth.logout", "static"}


def _unsafe_character(char: str) -> bool:
    # Control and format characters (browsers drop tabs and newlines from URLs, turning
    # "/\t/evil.example" into "//evil.example"), line separators, and backslashes (which
    # browsers read as "/", so "/\evil.example" is "//evil.example").
    return char == "\\" or unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``.

    The target is parsed, not prefix-checked: it must have no scheme and no host, start
    with a single ``/``, and hold no backslash or control character, whether written
    out or percent-encoded.
    """
    if not target:
        return "/"
    for form in (target, unquote(target)):
        if any(_unsafe_character(char) for char in form) or form.startswith("//"):
            return "/"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return "/"
    return target


#: The most of a request body any view but the upload reads (the sign-in form is a few hundred
#: bytes); past it, 413 before anything is parsed, and no multipart part is spooled to disk.
SMALL_BODY_BYTES = 16 * 1024


def _small_bodies() -> None:
    if request.endpoint != "api.upload_batch":
        request.max_content_length = SMALL_BODY_BYTES
        request.max_form_memory_size = SMALL_BODY_BYTES


def _not_for_shared_caches(response: Response) -> Response:
    # Pages, JSON and downloads are one caller's: no cache, shared or the browser's, may keep them.
    # The static files need no key and are the same for everyone.
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, config: Settings) -> None:
    """Small bodies everywhere but the upload; the cross-site check for everyone; the caller of every
    request found before its view runs; ``Cache-Control: no-store`` on every answer but the static
    files."""
    app.register_blueprint(bp)
    app.before_request(_small_bodies)
    app.after_request(_not_for_shared_caches)
    cross_site.init_app(app)

    @app.before_request
    def require_sign_in() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        g.caller = callers.identify(settings())
        if g.caller is not None:
            return None
        if wants_html() and request.method == "GET":
            return redirect(
                url_for("auth.login") + "?" + urlencode({"next": request.full_path.rstrip("?")}), 303
            )
        raise callers.unauthorized()


def _login_form(next_url: str, error: str | None, status: int = 200) -> tuple[str, int]:
    return render_template("login.html", next_url=next_url, error=error), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    """Ask a browser for an API key (or API_TOKEN) once; start a server-side session for it."""
    config = settings()
    next_url = safe_next(request.values.get("next"))
    if not callers.sign_in_needed(config):
        return redirect(next_url, 303)
    if request.method == "GET":
        return _login_form(next_url, None)
    address = login_limit.client_address()
    session_id, revoked = None, False
    key = request.form.get("token", "")
    kind = login_limit.family(key)
    with get_pool().connection() as conn:
        wait = None
        if kind == login_limit.API_TOKEN_FAMILY:  # a guessable family: past the limit, not even checked
            wait = login_limit.wait_seconds(conn, config, address, kind)
        if wait is None:
            answer = callers.key_caller(conn, config, key) if key else None
            caller, revoked = (answer.caller, answer.revoked) if answer else (None, False)
            if caller is not None:
                session_id = sessions.start(
                    conn,
                    signed_in_as=caller.name,
                    credential=key,
                    lifetime_seconds=config.session_lifetime,
                    replacing=sessions.cookie_id(request),
                    per_credential=config.sessions_per_key,
                )
            elif not revoked:
                wait = login_limit.record_failure(conn, config, address, kind)
    if wait is not None:
        detail = login_limit.too_many(wait).detail
        page, status = _login_form(next_url, detail, 429)
        return Response(page, status, {"Retry-After": str(wait)}, mimetype="text/html")
    if session_id is None:
        return _login_form(next_url, "That key was revoked." if revoked else "That key is not right.", 401)
    response = redirect(next_url, 303)
    sessions.set_cookie(
        response, session_id, lifetime_seconds=config.session_lifetime, secure=request.is_secure
    )
    return response


@bp.post("/logout")
def logout() -> Response:
    """End this browser's session in the database and drop its cookie."""
    session_id = sessions.cookie_id(request)
    if session_id is not None:
        with get_pool().connection() as conn:
            sessions.end(conn, session_id)
    response = redirect(url_for("auth.login") if callers.sign_in_needed(settings()) else "/", 303)
    sessions.clear_cookies(response)
    return response
