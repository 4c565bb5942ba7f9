"""The HTTP face of the batch sentiment service (Flask, served by gunicorn).

``create_app`` builds the app: settings from the environment (or the
``config`` given, for tests), the database pool, the error handlers and the
routes. gunicorn serves it as ``webapp:create_app()``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from flask import Flask

from core.settings import Settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides settings by field name."""
    from webapp import (
        api,
        db,
        exports,
        forwarded,
        groups,
        health,
        listings,
        metrics,
        pages,
        problems,
        replica,
        request_log,
        webhooks,
    )
    from webapp.auth import sign_in
    from webapp.feed import views as feed
    from webapp.openapi import document

    settings = Settings.from_env()
    if config:
        settings = replace(settings, **config)
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    from webapp.upload.csv_reader import parser_for

    parser_for(settings.upload_csv_parser)  # refused here, at start, rather than on each upload
    app = Flask(__name__)
    app.wsgi_app = forwarded.TrustedProxies(app.wsgi_app, settings.forwarded_allow_ips)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["settings"] = settings
    problems.init_app(app)
    db.init_app(app, settings)
    replica.init_app(app, settings)
    sign_in.init_app(app, settings)
    request_log.init_app(app)
    pages.init_app(app)
    blueprints = (
        api.bp,
        listings.bp,
        groups.bp,
        exports.bp,
        feed.bp,
        health.bp,
        metrics.bp,
        document.bp,
        webhooks.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def gunicorn_command(bind: str) -> list[str]:
    """The command line that serves the app with our gunicorn settings, as the Procfile's web does."""
    config = ["--config", "python:webapp.server.gunicorn_conf", "--bind", bind]
    return [sys.executable, "-m", "gunicorn", *config, "webapp:create_app()"]
