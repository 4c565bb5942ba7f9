"""``Idempotency-Key``: an upload retried with the same key answers the batch the first one made.

Keys are per client ('' without a key) and live IDEMPOTENCY_TTL; what clients see
is in docs/api.md ("Upload a file"). Two things the code relies on:

* :func:`reserve` inserts the key inside the upload's own transaction, before the
  body is read, so an upload racing it with the same key waits at that insert (at
  most :data:`WAIT_SECONDS`, then a 409), and a failed upload rolls its key back;
* :func:`record` ties the key to the batch and to the SHA-256 of the file and of
  the options that shape the batch, so another file under the same key is a 422,
  never a silent replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from core.errors import Conflict, InvalidInput, Unprocessable
from core.queries import q

#: Longest wait for an upload with the same key to finish, before the 409.
WAIT_SECONDS = 5
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Earlier:
    """The upload that made a batch with this key: the batch's id and the hash of what was sent."""

    public_id: str
    body_sha256: bytes


def check_key(key: str) -> str:
    """The header's value if it can be a key: 1 to 255 characters."""
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidInput(
            "Invalid Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters, got {len(key)}.",
            "invalid-idempotency-key",
        )
    return key


class BodyHash:
    """SHA-256 of the options that shape a batch and of the file's bytes, as they stream past."""

    def __init__(self, options: dict[str, object]) -> None:
        self._hash = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())

    def through(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._hash.update(piece)
            yield piece

    def digest(self) -> bytes:
        return self._hash.digest()


def reserve(conn: psycopg.Connection, client: str | None, key: str, ttl_seconds: float) -> Earlier | None:
    """Take ``key`` for this upload (None), or the earlier upload that made a live batch with it."""
    params = {"client": client or "", "key": key, "ttl_seconds": ttl_seconds}
    if _insert_waiting_at_most(conn, params):
        return None
    row = conn.execute(q("idempotency_keys_get"), params).fetchone()
    if row is None:  # its batch was deleted a moment ago: the next try takes the key over
        raise _in_use(key)
    return Earlier(row[0], bytes(row[1]))


def earlier(conn: psycopg.Connection, client: str | None, key: str, ttl_seconds: float) -> Earlier | None:
    """The upload that made a live batch with ``key``, if one did; None otherwise, or while that
    upload is still in flight (then :func:`reserve` waits for it)."""
    params = {"client": client or "", "key": key, "ttl_seconds": ttl_seconds}
    row = conn.execute(q("idempotency_keys_get"), params).fetchone()
    return None if row is None else Earlier(row[0], bytes(row[1]))


def check_replay(earlier: Earlier, body: Iterable[bytes], body_hash: BodyHash, key: str) -> None:
    """Read this request's body, and refuse it (422) unless it is what the earlier upload sent."""
    for _ in body:
        pass
    check_same(earlier, body_hash.digest(), key)


def record(conn: psycopg.Connection, client: str | None, key: str, batch_id: int, body_sha256: bytes) -> None:
    """Tie the key to the batch this upload made (commits with it)."""
    params = {"client": client or "", "key": key, "batch_id": batch_id, "body_sha256": body_sha256}
    conn.execute(q("idempotency_keys_record"), params)


def check_same(earlier: Earlier, body_sha256: bytes, key: str) -> None:
    """422 unless this request sent what the earlier one with the same key sent."""
    if earlier.body_sha256 != body_sha256:
        raise Unprocessable(
            "Idempotency-Key reused",
            f"Idempotency-Key {key!r} was used for another upload (batch {earlier.public_id}) with a "
            "different file or options; use a new key for a new upload.",
            "idempotency-key-reused",
            batch_id=earlier.public_id,
        )


def _insert_waiting_at_most(conn: psycopg.Connection, params: dict[str, object]) -> bool:
    """Take the key, waiting at most WAIT_SECONDS for an upload that holds it; whether it is ours.

    One statement: it inserts the key, or takes over a row whose key expired or whose batch was
    deleted, under that row's lock, so two retries of an expired key cannot both take it."""
    previous = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{WAIT_SECONDS}s",))
    try:
        with conn.transaction():  # a savepoint: a lock timeout must not end the upload's transaction
            taken = conn.execute(q("idempotency_keys_reserve"), params).fetchone() is not None
    except psycopg.errors.LockNotAvailable:
        raise _in_use(str(params["key"])) from None
    finally:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
    return taken


def _in_use(key: str) -> Conflict:
    return Conflict(
        "Idempotency-Key in use",
        f"An upload with Idempotency-Key {key!r} is still in progress; retry after it finishes.",
        "idempotency-key-in-use",
        retry_after=WAIT_SECONDS,
    )
