"""Completion webhooks, the parts web and runners share: secrets, signatures, the body, the attempts.

Signed the Standard Webhooks way (version 1.0.0): the HMAC-SHA256 of
``{webhook-id}.{webhook-timestamp}.{body}``, keyed with a ``whsec_`` secret. The first
attempt fixes the body (``webhook_events.body``), so every attempt sends the very
same bytes under the same ``webhook-id``. The batch's API key's own secret signs
(``webhook_secrets``), else WEBHOOK_SECRET; after a rotation the replaced secret
signs beside the new one for WEBHOOK_SECRET_OVERLAP, so a receiver on either secret
accepts it. What a receiver gets and how it checks it: docs/webhooks.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from core.batches import quota
from core.batches.model import Batch
from core.errors import Conflict, NotFound, OverQuota
from core.jsonshape import NULLABLE_TIME, TIME, Member, dump, iso, object_schema
from core.queries import q

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
#: Standard Webhooks asks for 24 to 64 bytes of key.
SECRET_BYTES_RANGE = (24, 64)
EVENT_TYPES = ("batch.completed", "batch.completed_with_errors", "batch.cancelled")
STATES = ("pending", "delivered", "failed")
OUTCOMES = ("delivered", "failed", "in_progress", "interrupted")
#: How soon a webhook may be sent again after the last retry (webhook_events_retry says a minute).
RETRY_COOLDOWN_SECONDS = 60


def new_secret() -> str:
    """A fresh signing secret: whsec_ and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class Rotation:
    """A key's new webhook secret, and until when the one it replaced signs too (None: it does not)."""

    secret: str
    previous_until: datetime | None


def give_secret(conn: psycopg.Connection, client: str, overlap_seconds: float = 0.0) -> Rotation:
    """A new signing secret for an API key's webhooks, to show once. The one it replaces goes on
    signing beside it for ``overlap_seconds`` (WEBHOOK_SECRET_OVERLAP): the key's own, or for its
    first secret WEBHOOK_SECRET, which signed the key's webhooks until then (``keys create`` gives
    a new key its first with no overlap)."""
    secret = new_secret()
    params = {"client": client, "secret": secret, "overlap_seconds": overlap_seconds}
    with conn.cursor(row_factory=namedtuple_row) as cur:
        row = cur.execute(q("webhook_secrets_set"), params).fetchone()
    if row is None:
        raise NotFound("No such key", f"There is no API key named {client!r}.", "key-not-found")
    return Rotation(secret, row.previous_until if overlap_seconds > 0 else None)


def secret_key(secret: str) -> bytes:
    """The HMAC key a whsec_ secret holds; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX} (then base64)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX} then base64: {exc}") from None
    low, high = SECRET_BYTES_RANGE
    if not low <= len(key) <= high:
        raise ValueError(f"a webhook secret holds {low} to {high} bytes, this one {len(key)}")
    return key


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header's value: ``v1,`` and base64(HMAC-SHA256(id.timestamp.body))."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request's headers: the three of Standard Webhooks and the body's type. Each of ``secrets``
    signs; the signatures are space-separated, as Standard Webhooks has it for a rotation (a
    receiver accepts the request when one of them is its secret's)."""
    signatures = " ".join(signature(secret, webhook_id, timestamp, body) for secret in secrets)
    return {
        "Content-Type": "application/json",
        "User-Agent": "batch-sentiment-webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def event_type(status: str) -> str:
    return f"batch.{status}"


def body(batch: Batch) -> str:
    """The event's body for a batch in a final state (minified JSON)."""
    event = {"type": event_type(batch.status), "timestamp": iso(batch.completed_at), "data": batch.to_json()}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def retry(conn: psycopg.Connection, batch: Batch, max_pending: int | None = None) -> None:
    """Send ``batch``'s finished webhook again, now, as its owner (or an admin) asks (``conn`` runs as
    the caller): the same webhook-id and body, tried for WEBHOOK_RETRY_FOR from now, backing off
    from the attempts made since. Conflict if the batch has no webhook, or if it is still pending
    (it will be tried anyway); OverQuota (429) within a minute of the last retry, or while the key
    has ``max_pending`` webhooks waiting (WEBHOOK_MAX_PENDING)."""
    if max_pending is not None:  # a retry puts the webhook back among the key's waiting ones
        quota.claim_webhook_place(conn, batch.client, max_pending)
    with conn.cursor(row_factory=namedtuple_row) as cur:
        row = cur.execute(q("webhook_events_retry"), {"public_id": batch.public_id}).fetchone()
    if row is None:
        detail = (
            "This batch has no webhook: it was uploaded without a callback_url."
            if batch.callback_url is None
            else f"This batch's webhook is sent once the batch finishes; it is {batch.status}."
        )
        raise Conflict("No webhook to send", detail, "no-webhook")
    if row.was != "pending" and row.too_soon:
        raise OverQuota(
            "Retried a moment ago",
            "This batch's webhook was sent again less than a minute ago; "
            f"retry in {RETRY_COOLDOWN_SECONDS} s.",
            "webhook-retry-too-soon",
            retry_after=RETRY_COOLDOWN_SECONDS,
        )
    if row.was == "pending":
        raise Conflict(
            "Webhook still pending",
            "This batch's webhook has not been delivered or given up yet; it will be tried again "
            "(see next_attempt_at).",
            "webhook-pending",
        )


@dataclass(frozen=True)
class Delivery:
    """One row of the webhook_deliveries view, as GET /batch/<id>/webhooks reads it."""

    webhook_id: str
    type: str
    state: str
    event_at: datetime
    next_attempt_at: datetime | None
    attempt: int | None
    started_at: datetime | None
    duration_ms: int | None
    status_code: int | None
    error: str | None
    outcome: str | None


EVENT_MEMBERS = (
    Member("webhook_id", lambda d: d.webhook_id, {"type": "string", "description": "The webhook-id header."}),
    Member("type", lambda d: d.type, {"enum": list(EVENT_TYPES)}),
    Member(
        "state",
        lambda d: d.state,
        {
            "enum": list(STATES),
            "description": "pending: to be tried (again); delivered: a 2xx; failed: given up.",
        },
    ),
    Member("created_at", lambda d: iso(d.event_at), TIME),
    Member(
        "next_attempt_at",
        lambda d: iso(d.next_attempt_at),
        {**NULLABLE_TIME, "description": "When the next attempt is due, while pending."},
    ),
)

ATTEMPT_MEMBERS = (
    Member("attempt", lambda d: d.attempt, {"type": "integer", "minimum": 1}),
    Member("started_at", lambda d: iso(d.started_at), TIME),
    Member("duration_ms", lambda d: d.duration_ms, {"type": ["integer", "null"], "minimum": 0}),
    Member(
        "status_code",
        lambda d: d.status_code,
        {"type": ["integer", "null"], "description": "The receiver's HTTP status; null without an answer."},
    ),
    Member(
        "error",
        lambda d: d.error,
        {
            "type": ["string", "null"],
            "description": "Why no answer came: refused address, connection, TLS, timeout.",
        },
    ),
    Member(
        "outcome",
        lambda d: d.outcome,
        {
            "enum": list(OUTCOMES),
            "description": "interrupted: the runner making it stopped or died; the event is tried again.",
        },
    ),
)


def deliveries_json(public_id: str, callback_url: str | None, rows: list[Delivery]) -> dict[str, Any]:
    """GET /batch/<id>/webhooks: the batch's event (null until it finishes, or without a callback_url)
    and every attempt, oldest first."""
    return {
        "batch_id": public_id,
        "callback_url": callback_url,
        "event": dump(rows[0], EVENT_MEMBERS) if rows else None,
        "attempts": [dump(row, ATTEMPT_MEMBERS) for row in rows if row.attempt is not None],
    }


SCHEMAS = {
    "WebhookEvent": object_schema(EVENT_MEMBERS, "A batch's completion webhook."),
    "WebhookAttempt": object_schema(ATTEMPT_MEMBERS, "One attempt to deliver it."),
    "WebhookDeliveries": {
        "type": "object",
        "description": "A batch's webhook: its event and every attempt, oldest first.",
        "required": ["batch_id", "callback_url", "event", "attempts"],
        "properties": {
            "batch_id": {"type": "string"},
            "callback_url": {"type": ["string", "null"], "description": "As given, without its query."},
            "event": {"oneOf": [{"$ref": "#/components/schemas/WebhookEvent"}, {"type": "null"}]},
            "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookAttempt"}},
        },
    },
}
