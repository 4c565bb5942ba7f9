"""How a setting is declared and read: the ``setting()`` declaration and the parsers of its values.

:mod:`core.settings` and its sections declare every setting with :func:`setting`; the words
and durations a value may be written with are parsed here, for the
environment and (``parse_bool``) for query parameters alike.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import field
from typing import Any

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_bool(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case); anything else is a ValueError."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_duration(text: str) -> float:
    """Seconds in '90', '45s', '30m', '12h', '7d' or '2w'."""
    raw = text.strip().lower()
    try:
        value = float(raw[:-1]) * _UNITS[raw[-1]] if raw and raw[-1] in _UNITS else float(raw)
    except ValueError as exc:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 45s, 30m, 12h, 7d)") from exc
    if not math.isfinite(value):
        raise ValueError(f"a duration must be finite: {text!r}")
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Addresses and networks, comma-separated ('127.0.0.1,10.0.0.0/8,::1'); '*' is every address,
    and '' none. A network with host bits set ('10.0.0.1/8') is a ValueError, as gunicorn has it."""
    networks: list[Network] = []
    for part in (piece.strip() for piece in text.split(",")):
        if part == "*":
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        elif part:
            try:
                networks.append(ipaddress.ip_network(part))
            except ValueError as exc:
                raise ValueError(f"not an address or a network: {part!r}") from exc
    return tuple(networks)


def parse_value(kind: str, raw: str, minimum: float | None) -> Any:
    if kind == "str":
        return raw
    if kind == "bool":
        return parse_bool(raw)
    if kind == "duration":
        return 0.0 if raw.strip().lower() == "off" else parse_duration(raw)
    if kind == "limit":  # a count, or off for no limit at all
        return None if raw.strip().lower() == "off" else parse_value("int", raw, minimum)
    value: float = int(raw) if kind == "int" else float(raw)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum:g}, got {value:g}")
    if minimum is None and value <= 0:  # a float with no minimum: a positive time or size
        raise ValueError(f"must be above 0, got {value:g}")
    return value


def setting(
    env: str,
    default: Any,
    doc: str,
    *,
    kind: str | None = None,
    minimum: float | None = None,
    shown: str | None = None,
) -> Any:
    """Declare one setting: its variable, default and doc.

    ``kind`` is taken from the default's type unless given (``duration`` takes '7d', '12h',
    or 'off'; ``limit`` a count, or 'off' for None); ``minimum`` bounds numbers (ints and limits
    default to at least 1, floats to above 0);
    ``shown`` is how the settings table shows a default that the value alone does not explain.
    """
    kind = kind or type(default).__name__
    if minimum is None and kind in ("int", "limit"):
        minimum = 1
    metadata = {"env": env, "doc": doc, "kind": kind, "minimum": minimum, "shown": shown}
    return field(default=default, metadata=metadata)
