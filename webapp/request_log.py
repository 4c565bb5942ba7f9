"""One log line per request: method, path, status, duration and the batch it concerns.

The path is the decoded one, so it may hold anything a client percent-encoded,
newlines included; the log formatters (core.logs) keep it on one line.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    @app.before_request
    def start_clock() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("request_started")
        duration_ms = (time.perf_counter() - started) * 1e3 if started else None
        batch = (request.view_args or {}).get("public_id")
        log.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms or 0.0,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 2) if duration_ms is not None else None,
                "batch": batch,
            },
        )
        return response
