"""Optional access control: with API_TOKEN set, every endpoint but the health
checks (and the OpenAPI document) needs the token.

API clients send ``Authorization: Bearer <token>``; without it they get a 401
problem+json with ``WWW-Authenticate``. Browsers (``Accept: text/html``) are
sent to ``/login``, which asks for the token once and keeps it in a cookie
marked HttpOnly and SameSite=Strict (and Secure over HTTPS). Comparisons are
constant-time (``hmac.compare_digest``). Without API_TOKEN the API is open.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, redirect, render_template, request, url_for

from core.settings import Settings
from webapp.db import settings
from webapp.health import PUBLIC_ENDPOINTS
from webapp.negotiation import wants_html
from webapp.problems import Problem

bp = Blueprint("auth", __name__)

COOKIE = "sentiment_token"
OPEN_ENDPOINTS = PUBLIC_ENDPOINTS | {"auth.login", "static"}


def _matches(candidate: str, expected: str) -> bool:
    return hmac.compare_digest(candidate.encode(), expected.encode())


def _safe_next(target: str | None) -> str:
    # Only local paths: never redirect a signed-in browser to another site.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def init_app(app: Flask, config: Settings) -> None:
    app.register_blueprint(bp)
    if not config.api_token:
        return
    expected = config.api_token

    @app.before_request
    def require_token() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _matches(token.strip(), expected):
            return None
        if _matches(request.cookies.get(COOKIE, ""), expected):
            return None
        if wants_html() and request.method == "GET":
            return redirect(
                url_for("auth.login") + "?" + urlencode({"next": request.full_path.rstrip("?")}), 303
            )
        raise Problem(
            401,
            "Unauthorized",
            "Send the API token as 'Authorization: Bearer <token>'.",
            "unauthorized",
            {"WWW-Authenticate": 'Bearer realm="batch-sentiment"'},
        )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    """Ask a browser for the API token once; keep it in an HttpOnly cookie."""
    expected = settings().api_token
    next_url = _safe_next(request.values.get("next"))
    if not expected:
        return redirect(next_url, 303)
    if request.method == "GET":
        return render_template("login.html", next_url=next_url, error=None)
    if not _matches(request.form.get("token", ""), expected):
        return render_template("login.html", next_url=next_url, error="That token is not right."), 401
    response = redirect(next_url, 303)
    response.set_cookie(
        COOKIE, expected, httponly=True, samesite="Strict", secure=request.is_secure, max_age=30 * 24 * 3600
    )
    return response
