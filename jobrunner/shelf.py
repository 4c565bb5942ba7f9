"""Chunks scored and not yet committed, shared by the runner's loop and its pipe's thread.

The loop puts each chunk here as soon as it is scored and takes what is left when its round
ends; the pipe's thread, between jobs, takes them all once the oldest has waited long enough
(``jobrunner.round_pipe``). Whoever takes a chunk commits it: taking is atomic, so no chunk is
committed twice or left behind.
"""

from __future__ import annotations

import threading
import time

from core.batches.queue import ScoredChunk


class Shelf:
    """Scored chunks of the round being scored, oldest first."""

    def __init__(self) -> None:
        self._items: list[tuple[ScoredChunk, float]] = []  # (chunk, when it was scored)
        self._lock = threading.Lock()

    def put(self, scored: ScoredChunk) -> None:
        with self._lock:
            self._items.append((scored, time.monotonic()))

    def take(self, waited: float = 0.0) -> list[ScoredChunk]:
        """Every chunk, taken off the shelf; none unless the oldest has waited ``waited`` seconds."""
        with self._lock:
            if not self._items or time.monotonic() - self._items[0][1] < waited:
                return []
            taken, self._items = self._items, []
        return [scored for scored, _ in taken]
