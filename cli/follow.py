"""``--follow`` and ``follow``: a batch's rows printed as CSV as they are scored.

The rows come from the batch's feed (cli.feed) in the order their chunks
commit, not in file order, each once: columns ``id,text,sentiment,score,
compound,error``, those of the ``results.csv`` download that the feed's rows
carry, cells a spreadsheet would run as a formula defused the same way (a
leading ``'``). Each ``rows`` event is written and flushed whole before its id
counts as printed, and Ctrl-C (or SIGTERM) waits for that write to finish: the
id then named on stderr (``--after``) resumes exactly after the last row
printed. The rows scored are a progress bar on stderr.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from cli import feed
from cli.progress import Bar
from cli.service import Service, ServiceError

COLUMNS = ("id", "text", "sentiment", "score", "compound", "error")
#: What a cell may not start with in a spreadsheet (it would be run as a formula).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while following; the exit code to give (128 + the signal)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def done(batch: dict[str, Any]) -> int:
    """Rows the batch is done with: scored, failed or set aside."""
    return batch["processed_count"] + batch["failed_count"] + batch["invalid_count"]


def follow(service: Service, batch_id: str, after: str = "", *, header: bool = True) -> dict[str, Any]:
    """Print the batch's rows after event ``after`` to stdout as they are scored; the final batch.
    Raises :class:`Interrupted` (or :class:`ServiceError`) after naming on stderr how to resume."""
    last = after
    signals = _Signals()
    say = service.say
    with signals.caught(), Bar(None, "rows scored", unit="row") as bar:

        def said(message: str) -> None:  # retries and reconnections, told above the bar
            with bar.aside(sys.stderr):
                say(message)

        service.say = said
        try:
            if header:
                with signals.held(), bar.aside():
                    _write(",".join(COLUMNS).encode() + b"\n")
            for event in feed.events(service, batch_id, last):
                if event.type == "rows":
                    data = csv_rows(json.loads(event.data)["rows"])
                    with signals.held():
                        with bar.aside():
                            _write(data)
                        last = event.id
                    continue
                last = event.id
                if event.type in ("progress", "end"):
                    batch = json.loads(event.data)
                    bar.set(done(batch), batch["total_count"])
                    if event.type == "end":
                        return batch
        except KeyboardInterrupt:
            bar.close()
            _resume_hint("interrupted", batch_id, last)
            raise Interrupted(128 + signals.received) from None
        except ServiceError as exc:
            bar.close()
            if exc.status is None or exc.status >= 500:  # the service away: it may be back later
                _resume_hint("stopped", batch_id, last)
            raise
        finally:
            service.say = say
    raise ServiceError(None, f"the feed of {batch_id} ended without its end event")


def csv_rows(rows: list[dict[str, Any]]) -> bytes:
    """The feed's rows as lines of CSV in COLUMNS."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        writer.writerow(
            [_defused(row.get("id")), _defused(row.get("text"))] + [row.get(column) for column in COLUMNS[2:]]
        )
    return text.getvalue().encode("utf-8")


def _defused(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _resume_hint(what: str, batch_id: str, last: str) -> None:
    after = f" --after {last}" if last else ""
    seen = f" after event {last}" if last else " before any event"
    print(
        f"sentiment: {what}{seen}; resume with: sentiment follow {batch_id}{after}",
        file=sys.stderr,
        flush=True,
    )


class _Signals:
    """SIGINT and SIGTERM as KeyboardInterrupt, but never inside :meth:`held`: one that arrives there
    is raised when it ends, so that a write and the id it prints are done together or not at all."""

    def __init__(self) -> None:
        self.received = signal.SIGINT
        self._holding = False
        self._pending = False

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; there, none are caught
            return
        before = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in before.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
