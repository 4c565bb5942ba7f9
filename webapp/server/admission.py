"""Caps on the long requests one web worker serves at once: uploads and exports.

Each upload and each ``results.csv``/``results.ndjson`` download holds a
thread and a pool connection for as long as it lasts. MAX_UPLOADS and
MAX_EXPORTS bound how many a worker process serves at once, so the rest of
its threads and connections stay free for status polls and pages. Past a cap
the answer is at once a 503 problem+json with ``Retry-After``, never a wait.
The slots live in the app, and gunicorn builds one app per worker process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import current_app

from webapp.db import settings
from webapp.problems import RETRY_AFTER_SECONDS, Problem

log = logging.getLogger(__name__)

_CREATING = threading.Lock()

#: What each kind of slot is called in a problem, and the setting that sizes it.
KINDS = {"uploads": "MAX_UPLOADS", "exports": "MAX_EXPORTS"}


def _limit(kind: str) -> int:
    return settings().max_uploads if kind == "uploads" else settings().max_exports


def _semaphore(kind: str) -> threading.BoundedSemaphore:
    slots = current_app.extensions.get("admission")
    if slots is None:
        with _CREATING:
            slots = current_app.extensions.setdefault(
                "admission", {name: threading.BoundedSemaphore(_limit(name)) for name in KINDS}
            )
    return slots[kind]


def busy(kind: str) -> Problem:
    limit = _limit(kind)
    return Problem(
        503,
        "Service Unavailable",
        f"This server is already serving {limit} {kind} at once ({KINDS[kind]} per web worker); "
        f"retry in {RETRY_AFTER_SECONDS} seconds.",
        f"too-many-{kind}",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def take(kind: str) -> Callable[[], None]:
    """A slot for one upload or export (``kind``), or a 503 Problem at once.

    Returns the function that gives the slot back; calling it again does nothing.
    """
    semaphore = _semaphore(kind)
    if not semaphore.acquire(blocking=False):
        log.info("refused one of %s: all %d slots taken", kind, _limit(kind))
        raise busy(kind)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            semaphore.release()

    return release
