"""Who is calling: before any view runs, the request's caller is put on ``g.caller``.

In this order: ``Authorization: Bearer <key>``, API_TOKEN (an admin) or an API key
(:mod:`core.clients`), anything else being a 401 that counts against the address's sign-in limit
for its credential family (:mod:`webapp.auth.login_limit`: past it, 429, and for guesses at
API_TOKEN even the right one, so a guesser learns nothing; a valid client key always gets in); then
the browser's session cookie, while the key it was made with is still accepted; then nothing: while
the service has no API key and no API_TOKEN, every request is the one local user
(:data:`core.clients.LOCAL_USER`),
who sees every batch, and a bearer credential is ignored. A revoked key still counts as a key, so
revoking every key does not open the service. Each lookup is one statement, and a key's
``last_used_at`` is written at most once a minute: a busy client costs no write per request.
"""

from __future__ import annotations

import hmac
import logging
from typing import NamedTuple

import psycopg
from flask import request

from core import clients
from core.clients import API_TOKEN_HOLDER, LOCAL_USER, Caller
from core.settings import Settings
from webapp.auth import login_limit, sessions
from webapp.db import get_pool
from webapp.problems import Problem

log = logging.getLogger(__name__)


def matches(candidate: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return hmac.compare_digest(candidate.encode(), expected.encode())


def unauthorized(detail: str = "Send an API key as 'Authorization: Bearer <key>'.") -> Problem:
    return Problem(
        401, "Unauthorized", detail, "unauthorized", {"WWW-Authenticate": 'Bearer realm="batch-sentiment"'}
    )


def bearer_token() -> str | None:
    """The credential of an ``Authorization: Bearer`` header, if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class KeyAnswer(NamedTuple):
    caller: Caller | None  # None: not accepted
    revoked: bool  # a key that was revoked
    open: bool  # the service has no key and no API_TOKEN: one user's local tool


def key_caller(conn: psycopg.Connection, config: Settings, key: str) -> KeyAnswer:
    """What a presented key stands for."""
    if config.api_token and matches(key, config.api_token):
        return KeyAnswer(API_TOKEN_HOLDER, False, False)
    check = clients.check_key_hash(conn, clients.key_hash(key))
    return KeyAnswer(check.caller, bool(check.revoked), not check.keys_exist and not config.api_token)


def from_bearer(config: Settings, key: str) -> Caller:
    """The caller of a request with a bearer credential; 401 or 429 if it is not accepted now."""
    address = login_limit.client_address()
    kind = login_limit.family(key)
    with get_pool().connection() as conn:
        if kind == login_limit.API_TOKEN_FAMILY:  # a guessable family: past the limit, not even checked
            wait = login_limit.wait_seconds(conn, config, address, kind)
            if wait is not None:
                raise login_limit.too_many(wait)
        answer = key_caller(conn, config, key)
        if answer.caller is not None:
            return answer.caller
        if answer.open:  # an open service ignores the credentials sent to it
            return LOCAL_USER
        refused = unauthorized(
            "This API key was revoked." if answer.revoked else "That API key is not known."
        )
        if answer.revoked:
            raise refused
        wait = login_limit.record_failure(conn, config, address, kind)
    if wait is not None:
        raise login_limit.too_many(wait)
    raise refused


def from_session(config: Settings) -> Caller | None:
    """The caller a browser's session cookie signs in as, while its key is still accepted."""
    session_id = sessions.cookie_id(request)
    if session_id is None:
        return None
    with get_pool().connection() as conn:
        session = sessions.find(conn, session_id)
        if session is None:
            return None
        if session.signed_in_as == API_TOKEN_HOLDER.name:
            valid = bool(config.api_token) and sessions.still_valid(session, config.api_token)
            return API_TOKEN_HOLDER if valid else None
        caller = clients.check_key_hash(conn, session.credential_hash).caller
    return caller if caller is not None and caller.name == session.signed_in_as else None


def sign_in_needed(config: Settings) -> bool:
    """Whether requests must carry a credential: API_TOKEN is set, or some API key exists."""
    if config.api_token:
        return True
    with get_pool().connection() as conn:
        return clients.check_key_hash(conn, b"").keys_exist


def identify(config: Settings) -> Caller | None:
    """The current request's caller; None if it has no credential and the service needs one."""
    key = bearer_token()
    if key is not None:
        return from_bearer(config, key)
    caller = from_session(config)
    if caller is not None:
        return caller
    return None if sign_in_needed(config) else LOCAL_USER
