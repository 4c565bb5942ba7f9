"""Who is calling: before any view runs, the request's caller is put on ``g.caller``.

A caller is found, in this order, from

1. ``Authorization: Bearer <key>``: API_TOKEN (an admin, for deployments that
   predate keys) or an API key (:mod:`core.clients`). Anything else is a 401
   problem+json, and counts against the address's sign-in limit
   (:mod:`webapp.auth.login_limit`); an address past the limit gets 429 even with the
   right key, so a guesser learns nothing.
2. the browser's session cookie (:mod:`webapp.auth.sessions`): it signs in as the
   key (or API_TOKEN) it was made with, for as long as that key is still
   accepted: revoking a key ends its sessions on their next request.
3. nothing: while the service has no API key and no API_TOKEN, every request
   is the one local user (:data:`core.clients.LOCAL_USER`), who sees every
   batch, as before keys existed (a bearer credential is ignored then, too).
   Once a key exists, the request is refused (a browser is sent to
   ``/login``). Revoking every key does not reopen the service: a revoked key
   still counts as a key.

Each lookup is one statement, and a key's ``last_used_at`` is written at most
once a minute, so a busy client costs no write per request.
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
    open: bool  # the service has no key and no API_TOKEN: a local tool, as before keys


def key_caller(conn: psycopg.Connection, config: Settings, key: str) -> KeyAnswer:
    """What a presented key stands for."""
    if config.api_token and matches(key, config.api_token):
        return KeyAnswer(API_TOKEN_HOLDER, False, False)
    check = clients.check_key_hash(conn, clients.key_hash(key))
    return KeyAnswer(check.caller, bool(check.revoked), not check.keys_exist and not config.api_token)


def counts_as_a_guess(credential: str, revoked: bool) -> bool:
    """Whether a refused credential counts against its address's sign-in limit: not a revoked key, nor
    anything shaped like our keys (see core.clients.looks_like_a_key); API_TOKEN guesses do."""
    return not revoked and not clients.looks_like_a_key(credential)


def from_bearer(config: Settings, key: str) -> Caller:
    """The caller of a request with a bearer credential; 401 or 429 if it is not accepted now."""
    address = login_limit.client_address()
    with get_pool().connection() as conn:
        wait = login_limit.wait_seconds(conn, config, address)
        if wait is not None:
            raise login_limit.too_many(wait)
        answer = key_caller(conn, config, key)
        if answer.caller is not None:
            return answer.caller
        if answer.open:  # as before keys existed: a credential sent to an open service is ignored
            return LOCAL_USER
        refused = unauthorized(
            "This API key was revoked." if answer.revoked else "That API key is not known."
        )
        if not counts_as_a_guess(key, answer.revoked):
            raise refused
        wait = login_limit.record_failure(conn, config, address)
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
