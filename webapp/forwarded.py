"""Forwarded headers, believed from the proxies of FORWARDED_ALLOW_IPS only.

A TLS-terminating proxy in front of the service connects from its own address over plain HTTP and
says who the client is (``X-Forwarded-For``) and how it came (``X-Forwarded-Proto``). Any client can
send those headers too, so they are read only when the request's peer is one of the proxies of
FORWARDED_ALLOW_IPS: then werkzeug's ``ProxyFix`` takes the last hop of each (the one that proxy
added) as ``REMOTE_ADDR`` and the scheme, which the sign-in limit and the session cookie's ``Secure``
flag read. From any other peer they are ignored. gunicorn is given the same list
(webapp/server/gunicorn_conf.py), so its own reading of ``X-Forwarded-Proto`` agrees, except over a
Unix socket, whose peer gunicorn always believes and this never does (it has no address to list).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from core.setting_values import Network, parse_networks

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TrustedProxies:
    """WSGI middleware: ``ProxyFix`` (one hop of ``X-Forwarded-For`` and ``-Proto``) for requests
    whose peer is in ``allowed``, the request untouched for every other."""

    def __init__(self, app: WsgiApp, allowed: str) -> None:
        self.app = app
        self.networks: tuple[Network, ...] = parse_networks(allowed)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (a ``REMOTE_ADDR``) is one of the allowed proxies."""
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # an IPv4 peer of a dual-stack socket
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.networks and self.trusts(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
