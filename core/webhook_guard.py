"""Which callback URLs a webhook may go to: the URL's form, and the SSRF guard on its addresses.

A ``callback_url`` is checked twice: at upload (its form, then every address its host
resolves to), and by the runner that delivers it, which resolves the name again,
checks every address and connects to one of those very addresses, never to the name,
so a name that resolves elsewhere the second time (DNS rebinding) gains nothing.
Anything but a global unicast address is refused, IPv6 addresses that embed a
refused IPv4 one included; WEBHOOK_ALLOW_PRIVATE lifts the address check, never the
form's. A refusal names the kind of address, never the address: a client must not
map internal DNS through it. The lookup is bounded (getaddrinfo has no timeout of its
own): past it the name counts as not resolving. The rules: docs/webhooks.md, "The SSRF
guard".
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import InvalidInput

MAX_URL_CHARS = 2048
SCHEMES = {"http": 80, "https": 443}
#: Cloud metadata services, named for a clearer refusal (each is refused as link-local, private
#: or shared anyway).
log = logging.getLogger(__name__)

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

#: Site-local IPv6 (deprecated by RFC 3879, still routed inside some networks); the ipaddress
#: module counts it as global.
SITE_LOCAL = ipaddress.ip_network("fec0::/10")
#: Name lookups of this process that may wait on the resolver at once; past them a lookup fails.
MAX_LOOKUPS = 16
#: Of those, one owner's (an API key's): a lookup that timed out holds its place until the resolver
#: gives up, so one key's silent name servers cannot take every place from the others.
MAX_LOOKUPS_PER_OWNER = 4
#: How long a lookup waits when its caller gives no bound.
LOOKUP_TIMEOUT = 3.0
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)
_owners_lock = threading.Lock()
_owners: dict[str, int] = {}  # lookups in flight per owner

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """Where a callback URL points: what to resolve, what to connect to, what to ask for."""

    url: str
    scheme: str
    host: str  # the name (or address literal) to resolve, and for TLS the name to check
    port: int
    target: str  # the path and query to request
    host_header: str  # the Host header, as the URL gives it


def _bad(detail: str) -> InvalidInput:
    return InvalidInput("Invalid callback_url", detail, "invalid-callback-url")


def parse_callback_url(url: str) -> Target:
    """The URL's target; InvalidInput (400) for anything but an http(s) URL with a host."""
    if len(url) > MAX_URL_CHARS:
        raise _bad(f"callback_url is {len(url):,} characters long; at most {MAX_URL_CHARS:,} are accepted.")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _bad(
            "callback_url must be ASCII without spaces or control characters (percent-encode them, "
            "and write an international host name in its xn-- form)."
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _bad(f"callback_url must be an http or https URL, not {parts.scheme or 'a relative one'!r}.")
    if "@" in parts.netloc:
        raise _bad("callback_url must not hold a user name or password; put a token in its query instead.")
    if parts.fragment or url.endswith("#"):
        raise _bad("callback_url must not have a #fragment (it is never sent).")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError:
        raise _bad("callback_url has an invalid port.") from None
    host = parts.hostname
    if not host:
        raise _bad("callback_url has no host.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, scheme, host, port, target, parts.netloc)


def refusal(address: Address) -> str | None:
    """Why the guard refuses this address, or None for a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and (reason := refusal(embedded)):
            return f"{reason}, wrapped in an IPv6 address"
        if address in SITE_LOCAL:
            return "a site-local address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attribute, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return what
    if not address.is_global:
        return "not a public address"
    return None


class Refused(InvalidInput):
    """The callback's host is, or resolves to, an address the guard refuses, or does not resolve.

    Every refusal tells the client the same thing: which of these it was would let a client map
    the internal DNS (which names exist, which are private). ``reason`` says it, for the log."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(
            "Callback address refused",
            f"callback_url's host {host!r} is refused: webhooks go to hosts that resolve in time to "
            "public addresses only (WEBHOOK_ALLOW_PRIVATE=true lifts the address rule).",
            "callback-url-refused",
        )
        self.reason = reason


class LookupTimedOut(Refused):
    """The callback's host did not resolve within the bound."""


def _lookup(target: Target, timeout: float, owner: str) -> list[tuple]:  # type: ignore[type-arg]
    """getaddrinfo within ``timeout`` seconds. It cannot be interrupted, so it runs on a daemon
    thread, left to end by itself (the resolver's own timeouts) when the wait is over; at most
    MAX_LOOKUPS of them at once, MAX_LOOKUPS_PER_OWNER of them ``owner``'s."""
    slow = LookupTimedOut(target.host, f"did not resolve in {timeout:g} s")
    with _owners_lock:
        if _owners.get(owner, 0) >= MAX_LOOKUPS_PER_OWNER:
            raise LookupTimedOut(target.host, f"{owner!r} has {MAX_LOOKUPS_PER_OWNER} lookups waiting")
        _owners[owner] = _owners.get(owner, 0) + 1
    deadline = time.monotonic() + timeout
    if not _lookups.acquire(timeout=timeout):
        _done(owner)
        raise slow
    outcome: list = []
    done = threading.Event()

    def look_up() -> None:
        try:
            outcome.append(
                socket.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            )
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)
        finally:
            _lookups.release()
            _done(owner)
            done.set()

    threading.Thread(target=look_up, name="callback-lookup", daemon=True).start()
    if not done.wait(max(deadline - time.monotonic(), 0.0)):
        raise slow
    if isinstance(outcome[0], Exception):
        raise Refused(target.host, f"does not resolve ({outcome[0]})")
    return outcome[0]


def _done(owner: str) -> None:
    with _owners_lock:
        _owners[owner] -= 1
        if not _owners[owner]:
            del _owners[owner]


def resolve(
    target: Target, *, allow_private: bool, timeout: float = LOOKUP_TIMEOUT, owner: str | None = None
) -> list[Address]:
    """Every address the target's host resolves to within ``timeout`` seconds, each checked; Refused
    if it does not resolve in time or any of them is refused (one bad address is enough: which one
    a connection would use is not ours to pick). ``owner``: whose lookup it is (an API key's name;
    None for uploads without one)."""
    addresses: list[Address] = []
    for info in _lookup(target, timeout, owner or ""):
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not allow_private:
        for address in addresses:
            if reason := refusal(address):
                raise Refused(target.host, f"is or resolves to {reason}")
    return addresses


def check_callback_url(
    url: str, *, allow_private: bool, timeout: float = LOOKUP_TIMEOUT, owner: str | None = None
) -> str:
    """The URL as stored, once its form and its addresses pass, its host resolved within ``timeout``
    seconds (InvalidInput, a 400, otherwise; a refusal's reason is logged, not told)."""
    try:
        resolve(parse_callback_url(url), allow_private=allow_private, timeout=timeout, owner=owner)
    except Refused as refused:
        log.info("callback_url refused: %s %s", refused.detail.split(":")[0], refused.reason)
        raise
    return url


def shown_url(url: str | None) -> str | None:
    """The URL as the API shows it: without its query, which may hold a token."""
    if url is None:
        return None
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()
