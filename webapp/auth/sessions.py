"""Server-side browser sessions: the sign-in cookie holds a random id, never a key.

:func:`start` gives the browser a fresh 256-bit id in an HttpOnly, SameSite=Strict cookie (Secure
over HTTPS) and stores only the id's SHA-256 in ``web_sessions``, with who signed in
(``signed_in_as``), the SHA-256 of the credential used and an expiry (SESSION_LIFETIME); it ends
the browser's previous session and keeps at most SESSIONS_PER_KEY per credential, the newest.
:func:`find` looks a cookie up; :func:`end` deletes the row, so a copied cookie stops working too.
The table holds hashes only: reading it signs no one in. A session holds only while its
credential is still accepted (:func:`webapp.auth.callers.from_session`), so changing API_TOKEN,
or revoking a key, ends the sessions made with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from flask import Request, Response
from psycopg.rows import class_row

from core.queries import q

log = logging.getLogger(__name__)

COOKIE = "sentiment_session"
#: A cookie some browsers may still hold with an API token in it, in clear: never read; sign-in and
#: sign-out delete it.
LEGACY_TOKEN_COOKIE = "sentiment_token"
#: Longest cookie value looked up (ours are 43 characters); longer ones are not ours.
_MAX_ID_CHARS = 128


@dataclass(frozen=True)
class WebSession:
    """One signed-in browser, as ``web_sessions`` holds it."""

    signed_in_as: str
    credential_hash: bytes
    created_at: datetime
    expires_at: datetime


def digest(secret: str) -> bytes:
    """SHA-256 of a cookie id or a credential: what the database holds instead of either."""
    return hashlib.sha256(secret.encode()).digest()


def start(
    conn: psycopg.Connection,
    *,
    signed_in_as: str,
    credential: str,
    lifetime_seconds: float,
    replacing: str | None = None,
    per_credential: int | None = None,
) -> str:
    """Create a session for a credential just checked; return the id for the browser's cookie.

    The session the browser had (``replacing``, its cookie's id) ends, so an id another party knew
    before the sign-in signs no one in after it; past ``per_credential`` sessions of this
    credential, the oldest end."""
    session_id = secrets.token_urlsafe(32)
    credential_hash = digest(credential)
    with conn.transaction():
        if per_credential is not None:
            conn.execute(q("web_sessions_lock_credential"), {"credential_hash": credential_hash})
        conn.execute(q("web_sessions_delete_expired"))
        if replacing:
            end(conn, replacing)
        conn.execute(
            q("web_sessions_insert"),
            {
                "id_hash": digest(session_id),
                "signed_in_as": signed_in_as,
                "credential_hash": credential_hash,
                "lifetime_seconds": lifetime_seconds,
            },
        )
        if per_credential is not None:
            conn.execute(
                q("web_sessions_keep_newest"), {"credential_hash": credential_hash, "keep": per_credential}
            )
    log.info("signed in as %s", signed_in_as)
    return session_id


def find(conn: psycopg.Connection, session_id: str | None) -> WebSession | None:
    """The live session a cookie's id names, or None (unknown, expired, ended)."""
    if not session_id or len(session_id) > _MAX_ID_CHARS:
        return None
    with conn.cursor(row_factory=class_row(WebSession)) as cur:
        return cur.execute(q("web_sessions_get"), {"id_hash": digest(session_id)}).fetchone()


def still_valid(session: WebSession, credential: str) -> bool:
    """Whether the session was made with ``credential``, which is still the accepted one."""
    return hmac.compare_digest(session.credential_hash, digest(credential))


def end(conn: psycopg.Connection, session_id: str) -> None:
    """Sign the browser out: its row goes, so the id signs no one in any more."""
    if len(session_id) <= _MAX_ID_CHARS:
        conn.execute(q("web_sessions_delete"), {"id_hash": digest(session_id)})


def cookie_id(request: Request) -> str | None:
    """The session id the request's cookie carries, if any."""
    return request.cookies.get(COOKIE) or None


def set_cookie(response: Response, session_id: str, *, lifetime_seconds: float, secure: bool) -> None:
    """Hand the browser its session id: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(lifetime_seconds),
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
    response.delete_cookie(LEGACY_TOKEN_COOKIE)


def clear_cookies(response: Response) -> None:
    """Tell the browser to forget its session id (and any LEGACY_TOKEN_COOKIE)."""
    response.delete_cookie(COOKIE, httponly=True, samesite="Strict")
    response.delete_cookie(LEGACY_TOKEN_COOKIE)
