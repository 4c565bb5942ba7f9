"""A probe: a thread that samples something every ``interval`` seconds while a ``with`` block runs.

Subclasses write ``sample`` only. With a database ``url`` the thread holds its own autocommit
connection and passes it to ``sample``; without one, ``sample`` gets None.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Self

import psycopg


class Probe:
    def __init__(self, interval: float, url: str | None = None) -> None:
        self.interval, self.url = interval, url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def sample(self, conn: psycopg.Connection | None) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        connection = psycopg.connect(self.url, autocommit=True) if self.url else contextlib.nullcontext()
        with connection as conn:
            while not self._stop.is_set():
                self.sample(conn)
                self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
