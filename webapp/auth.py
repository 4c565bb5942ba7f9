"""Optional access control: with API_TOKEN set, every endpoint but the health
checks needs ``Authorization: Bearer <token>`` (401 problem+json otherwise).

The comparison is constant-time (``hmac.compare_digest``). Without API_TOKEN
the API is open, as it is for local use.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from jobrunner.settings import Settings
from webapp.health import PUBLIC_ENDPOINTS
from webapp.problems import Problem


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.api_token:
        return
    expected = settings.api_token.encode()

    @app.before_request
    def require_token() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise Problem(
                401,
                "Unauthorized",
                "Send the API token as 'Authorization: Bearer <token>'.",
                "unauthorized",
                {"WWW-Authenticate": 'Bearer realm="batch-sentiment"'},
            )
