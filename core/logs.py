"""Logging set-up for the entry points (runner, web, make run).

LOG_LEVEL picks the level; LOG_FORMAT=json writes one JSON object per line
(time, level, logger, message and any structured fields a line carries, such
as batch, chunk, rows, duration_ms, method, path, status), for log shippers.
Library modules only ever call ``logging.getLogger(__name__)``.

Either way a message is one line, whatever a client put in it: the text format
escapes control characters, line and paragraph separators and bidirectional
overrides (a request for ``/x%0a2026-01-01 ... INFO forged`` logs ``\\n``, not a
second line), and JSON escapes them by itself. Only a traceback spans lines.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"

# C0 and C1 controls, DEL, U+2028/U+2029, and the bidirectional embeddings, overrides and isolates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape_controls(text: str) -> str:
    """``text`` with every character that could break or disguise a log line written as an escape."""
    return _UNPRINTABLE.sub(_escape, text)


class TextFormatter(logging.Formatter):
    """The text format: one line per message, its unprintable characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        original = record.message
        record.message = escape_controls(original)
        try:
            return super().formatMessage(record)
        finally:
            record.message = original


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger (replacing any)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
