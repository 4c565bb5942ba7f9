"""Progress bars (tqdm, on stderr), shown only when stdout is a terminal.

Two bars: the upload's bytes, and the rows scored while ``--wait`` polls the
batch. When stdout is not a terminal (a pipe, a file, a script) the same
calls do nothing, so a script's output is only what the command prints.
"""

from __future__ import annotations

import sys
from typing import Any


def shown() -> bool:
    return sys.stdout.isatty()


class Bar:
    """A tqdm bar when stdout is a terminal; else nothing at all."""

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

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
