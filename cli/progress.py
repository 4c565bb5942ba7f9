"""Progress bars (tqdm, on stderr), shown only when stderr is a terminal.

Bars: the upload's bytes, and the rows scored while ``--wait`` polls the batch
or ``--follow`` reads its feed. Where they are drawn decides: with stderr on a
terminal they show even when stdout goes to a file or a pipe; with stderr
redirected the same calls do nothing, so a log holds only messages.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO


def shown() -> bool:
    return sys.stderr.isatty()


class Bar:
    """A tqdm bar when stderr is a terminal; else nothing at all."""

    def __init__(self, total: int | None, name: str, *, unit: str = "it", bytes_: bool = False) -> None:
        self._bar: Any = None
        if shown():
            from tqdm import tqdm

            options = {"unit": "B", "unit_scale": True, "unit_divisor": 1024} if bytes_ else {"unit": unit}
            self._bar = tqdm(total=total, desc=name, file=sys.stderr, dynamic_ncols=True, **options)

    def update(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def set(self, done: int, total: int | None = None) -> None:
        """Move the bar to ``done`` (of ``total``, if it changed)."""
        if self._bar is None:
            return
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def reset(self) -> None:
        """Back to zero: the upload is sent again."""
        if self._bar is not None:
            self._bar.reset()

    @contextlib.contextmanager
    def aside(self, file: TextIO | None = None) -> Iterator[None]:
        """``file`` (stdout by default) is written inside: when it is the bar's terminal too, the
        bar steps aside (is cleared, then drawn again below what was written)."""
        file = file or sys.stdout
        if self._bar is None or not file.isatty():
            yield
            return
        with self._bar.external_write_mode(file=file):
            yield

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
