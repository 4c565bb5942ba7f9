"""What a client says about a batch at upload: its labels (``metadata``) and how long to keep it
(``expires_after``), checked here so every refusal says exactly what is wrong.

``metadata`` is a JSON object of at most 16 string pairs, each key 1 to 64 characters, each value
at most 512; it comes back on every batch object and filters ``/batches?metadata[key]=value``
(containment on a GIN index). ``expires_after`` is a duration (``7d``, ``12h``, ``90m``, seconds)
from 1 second to MAX_EXPIRES_AFTER (at most 10 years): the batch is purged that long after it
finishes; without it, RESULTS_TTL as it is at upload applies: when unset, DEFAULT_EXPIRY for a
service with keys and nothing for the local user of one without; nothing when RESULTS_TTL is off.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import timedelta

from core.errors import InvalidInput
from core.setting_values import parse_duration

MAX_PAIRS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512
LONGEST_EXPIRY = timedelta(days=3650)
#: How long a batch is kept when neither its upload nor RESULTS_TTL says, on a service with keys:
#: a shared service's storage goes back to its clients on its own.
DEFAULT_EXPIRY = timedelta(days=30)


def _bad(slug: str, detail: str) -> InvalidInput:
    return InvalidInput("Invalid metadata" if slug == "invalid-metadata" else "Invalid expiry", detail, slug)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_pairs(pairs: Mapping[str, object], where: str) -> dict[str, str]:
    """The pairs if they are labels we keep: at most 16, string keys and values of bounded length."""
    if len(pairs) > MAX_PAIRS:
        raise _bad("invalid-metadata", f"{where} has {len(pairs)} keys; at most {MAX_PAIRS} are kept.")
    for key, value in pairs.items():
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise _bad(
                "invalid-metadata", f"{where}: key {key[:80]!r} must be 1 to {MAX_KEY_CHARS} characters."
            )
        if not isinstance(value, str):
            raise _bad(
                "invalid-metadata",
                f"{where}: the value of {key!r} must be a string, not {type(value).__name__} "
                f"({json.dumps(value)[:80]}).",
            )
        if len(value) > MAX_VALUE_CHARS:
            raise _bad(
                "invalid-metadata",
                f"{where}: the value of {key!r} is {len(value)} characters; at most {MAX_VALUE_CHARS}.",
            )
        if not (_storable(key) and _storable(value)):
            raise _bad(
                "invalid-metadata",
                f"{where}: {key!r} holds a lone surrogate (\\ud800-\\udfff), which PostgreSQL cannot store.",
            )
        if "\x00" in key or "\x00" in value:
            raise _bad(
                "invalid-metadata", f"{where}: {key!r} holds a NUL character, which PostgreSQL cannot store."
            )
    return dict(pairs)  # type: ignore[arg-type]


def parse_metadata(text: str | None) -> dict[str, str]:
    """The ``metadata`` parameter (a JSON object), or {} when absent."""
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(
            "invalid-metadata",
            f'metadata is not valid JSON ({exc}); send an object like {{"project": "q3"}}.',
        ) from exc
    if not isinstance(value, dict):
        raise _bad(
            "invalid-metadata", f"metadata must be a JSON object of string pairs, not {type(value).__name__}."
        )
    return check_pairs(value, "metadata")


def parse_expires_after(
    text: str | None, longest: float = LONGEST_EXPIRY.total_seconds()
) -> timedelta | None:
    """The ``expires_after`` parameter as a duration, or None when absent; from 1 second to
    ``longest`` seconds (MAX_EXPIRES_AFTER, at most 3650 days)."""
    if text is None or text == "":
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise _bad("invalid-expiry", f"expires_after: {exc}.") from exc
    longest = min(longest or math.inf, LONGEST_EXPIRY.total_seconds())
    if not 1 <= seconds <= longest:
        most = f"{longest / 86400:g} days" if longest >= 86400 else f"{longest:g} seconds"
        raise _bad("invalid-expiry", f"expires_after must be from 1 second to {most}, got {text!r}.")
    return timedelta(seconds=seconds)


def default_expiry(results_ttl_seconds: float | None, keys_exist: bool) -> timedelta | None:
    """What an upload that gave no ``expires_after`` is kept for: RESULTS_TTL when set (None when
    off), else DEFAULT_EXPIRY once the service has keys, else None (until deleted)."""
    if results_ttl_seconds is None:
        return DEFAULT_EXPIRY if keys_exist else None
    return timedelta(seconds=results_ttl_seconds) if results_ttl_seconds else None
