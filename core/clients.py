"""Clients and their API keys: who is calling, and what that caller may see.

Keys are made, listed and revoked from the command line (jobrunner/keys.py), never
over HTTP, and stored only as their SHA-256: a fast hash is safe for 256 random bits,
and a slow one would slow every request. A key's name names the client that owns its
batches, so a revoked key stays in ``api_keys`` and its name is never reused.
:class:`Caller` answers "who is this request": a client key, an admin key, the holder
of API_TOKEN, or the local user while no key exists. The web app turns it into the
role and ``sentiment.client`` that row-level security checks (webapp/db.py). Details:
docs/clients.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.queries import q

log = logging.getLogger(__name__)

ROLES = ("client", "admin")
#: What the key looks like: a prefix that secret scanners and people recognise, then 256 bits.
KEY_PREFIX = "sk_sent_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Caller:
    """Who a request comes from. ``client`` owns what it uploads; None uploads unowned batches."""

    name: str  # shown on the pages: the key's name, "API_TOKEN", or "local"
    client: str | None
    admin: bool


def require_admin(caller: Caller, why: str) -> None:
    """Forbidden (403) unless ``caller`` is an admin; ``why`` says what needs one."""
    if not caller.admin:
        raise Forbidden("Admin key needed", why, "admin-only")


#: Every request while the service has no keys and no API_TOKEN: one local user who sees everything.
LOCAL_USER = Caller(name="local", client=None, admin=True)
#: The holder of API_TOKEN: an admin whose uploads belong to no key.
API_TOKEN_HOLDER = Caller(name="API_TOKEN", client=None, admin=True)


@dataclass(frozen=True)
class ApiKey:
    """One row of ``api_keys`` as ``keys list`` shows it (never the key)."""

    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeyCheck:
    """What a presented key turned out to be, and whether the service has keys at all."""

    name: str | None
    role: str | None
    revoked: bool | None
    keys_exist: bool

    @property
    def caller(self) -> Caller | None:
        """The caller the key stands for, or None if it is unknown or revoked."""
        if self.name is None or self.revoked:
            return None
        return Caller(name=self.name, client=self.name, admin=self.role == "admin")


def key_hash(key: str) -> bytes:
    """What ``api_keys`` stores for a key (and web_sessions for the key a browser signed in with)."""
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    """A fresh key: the prefix and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43}")
#: Names that mean something else on the pages and in web_sessions.signed_in_as.
RESERVED_NAMES = ("API_TOKEN", "local")


def looks_like_a_key(credential: str) -> bool:
    """Whether ``credential`` has the shape of our keys: guessing one of 256 bits is hopeless, so a
    wrong one is not counted against its address (a revoked key in a retry loop behind a shared
    proxy would otherwise lock every other client out)."""
    return KEY_PATTERN.fullmatch(credential) is not None


def check_name(name: str) -> str:
    """The name if it can name a client: letters, digits, '.', '_', '-', up to 63 characters."""
    if name in RESERVED_NAMES:
        raise InvalidInput("Bad key name", f"{name!r} is reserved; choose another name.", "bad-key-name")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            "Bad key name",
            f"A key's name is 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit; "
            f"got {name!r}.",
            "bad-key-name",
        )
    return name


def create_key(conn: psycopg.Connection, name: str, *, admin: bool = False) -> str:
    """Make a key named ``name``; return the key itself, which is stored nowhere."""
    key = new_key()
    params = {"name": check_name(name), "key_hash": key_hash(key), "role": "admin" if admin else "client"}
    if conn.execute(q("api_keys_insert"), params).fetchone() is None:
        raise Conflict(
            "Name taken",
            f"There is already a key named {name!r} (revoked keys keep their names); choose another name.",
            "key-name-taken",
        )
    log.info("key %s created (%s)", name, params["role"])
    return key


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    """Every key, oldest first."""
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(q("api_keys_list")).fetchall()


def revoke_key(conn: psycopg.Connection, name: str) -> None:
    """Refuse the key from the next request on; NotFound if no live key has that name."""
    if conn.execute(q("api_keys_revoke"), {"name": name}).fetchone() is None:
        with conn.cursor(row_factory=class_row(ApiKey)) as cur:
            known = cur.execute(q("api_keys_get_by_name"), {"name": name}).fetchone()
        if known is not None:
            raise Conflict(
                "Already revoked", f"The key {name!r} was revoked at {known.revoked_at}.", "revoked"
            )
        raise NotFound("No such key", f"There is no key named {name!r}.", "key-not-found")
    log.info("key %s revoked", name)


def check_key_hash(conn: psycopg.Connection, digest: bytes) -> KeyCheck:
    """Look up the key whose hash is ``digest`` (b"" for none presented), in one statement; a browser
    session keeps the hash of the key it signed in with, so it is checked the same way."""
    with conn.cursor(row_factory=class_row(KeyCheck)) as cur:
        return cur.execute(q("api_keys_authenticate"), {"key_hash": digest}).fetchone()


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_to_the_network_warning(
    conninfo: str, api_token: str, listening_on: list[tuple[str, int]]
) -> str | None:
    """The warning to log at start when the service listens beyond loopback with no way to sign in.

    Without API keys (and no API_TOKEN) anyone who can reach the port can read, cancel and delete
    every batch; that is right for a local tool, not for a port others can reach.
    """
    exposed = [f"{host}:{port}" for host, port in listening_on if not is_loopback(host)]
    if not exposed or api_token:
        return None
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            if check_key_hash(conn, b"").keys_exist:
                return None
    except psycopg.Error as exc:
        log.debug("could not look for API keys at start: %s", exc)
        return None
    return (
        f"listening on {', '.join(exposed)} with no API key: anyone who can reach it can read, cancel "
        "and delete every batch. Make a key (python -m jobrunner keys create NAME) or listen on "
        "127.0.0.1 only."
    )


def sees_every_row(conn: psycopg.Connection) -> bool:
    """Whether this connection's login is not subject to row-level security (runners must not be: they
    score every client's batches)."""
    return conn.execute(q("api_keys_runner_sees_every_row")).fetchone()[0]
