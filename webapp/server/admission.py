"""Caps on the long requests one web worker serves at once: uploads and exports, with a share per key.

Each upload and each ``results.csv``/``results.ndjson`` download holds a
thread and a pool connection for as long as it lasts. MAX_UPLOADS and
MAX_EXPORTS bound how many a worker process serves at once, so the rest of
its threads and connections stay free for status polls and pages. Once keys
exist, one key (or API_TOKEN) may hold at most half of each kind's slots (at
least one), so a key whose uploads dribble in or whose readers read slowly
leaves the other half to everyone else. Past a cap or a share the answer is at
once a 503 problem+json with ``Retry-After``, never a wait. The slots live in
the app, and gunicorn builds one app per worker process.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from flask import current_app

from core.clients import LOCAL_USER
from webapp.db import caller, settings
from webapp.problems import RETRY_AFTER_SECONDS, Problem

log = logging.getLogger(__name__)

_CREATING = threading.Lock()

#: What each kind of slot is called in a problem, and the setting that sizes it.
KINDS = {"uploads": "MAX_UPLOADS", "exports": "MAX_EXPORTS"}


class Slots:
    """One kind's slots in one worker: ``limit`` at once, ``share`` of them at most per holder."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.share = max(1, limit // 2)
        self._lock = threading.Lock()
        self._taken = 0
        self._held: Counter[str] = Counter()

    def take(self, holder: str | None) -> str | None:
        """Take a slot for ``holder`` (None: no share applies); None if taken, else why not."""
        with self._lock:
            if self._taken >= self.limit:
                return "full"
            if holder is not None and self._held[holder] >= self.share:
                return "share"
            self._taken += 1
            if holder is not None:
                self._held[holder] += 1
            return None

    def give_back(self, holder: str | None) -> None:
        with self._lock:
            self._taken -= 1
            if holder is not None:
                self._held[holder] -= 1
                if not self._held[holder]:
                    del self._held[holder]


def _limit(kind: str) -> int:
    return settings().max_uploads if kind == "uploads" else settings().max_exports


def _slots(kind: str) -> Slots:
    slots = current_app.extensions.get("admission")
    if slots is None:
        with _CREATING:
            slots = current_app.extensions.setdefault(
                "admission", {name: Slots(_limit(name)) for name in KINDS}
            )
    return slots[kind]


def busy(kind: str, slots: Slots | None = None, holder: str | None = None) -> Problem:
    """The 503 past the worker's cap, or, with ``holder``, past that key's share of it."""
    limit = _limit(kind)
    if holder is None or slots is None:
        detail = f"This server is already serving {limit} {kind} at once ({KINDS[kind]} per web worker)"
    else:
        detail = (
            f"{holder!r} already holds {slots.share} of this server's {limit} {kind} "
            f"(a key may hold at most half of {KINDS[kind]} per web worker)"
        )
    return Problem(
        503,
        "Service Unavailable",
        f"{detail}; retry in {RETRY_AFTER_SECONDS} seconds.",
        f"too-many-{kind}",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def take(kind: str) -> Callable[[], None]:
    """A slot for one upload or export (``kind``) of the current caller, or a 503 Problem at once.

    Returns the function that gives the slot back; calling it again does nothing.
    """
    slots = _slots(kind)
    who = caller()
    holder = None if who == LOCAL_USER else who.name  # one user alone shares with nobody
    refused = slots.take(holder)
    if refused == "full":
        log.info("refused one of %s: all %d slots taken", kind, slots.limit)
        raise busy(kind)
    if refused == "share":
        log.info("refused one of %s to %s: it holds %d of %d slots", kind, holder, slots.share, slots.limit)
        raise busy(kind, slots, holder)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            slots.give_back(holder)

    return release
