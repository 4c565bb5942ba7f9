"""Completion webhooks on the web side: the upload's ``callback_url``, and ``GET /batch/<id>/webhooks``.

An upload may name a ``callback_url`` (a form field before the file, or a query
parameter with a raw body). It is checked before the body is read: its form,
then its host's addresses (the SSRF guard, :mod:`core.webhook_guard`); a
refused one is a 400 and nothing is stored. Runners deliver the webhook
(``jobrunner/webhooks.py``); this view shows the event and its attempts,
owner-scoped like every ``/batch/<id>`` endpoint (the transaction runs as the
caller, and row-level security hides other clients' events).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from psycopg.rows import class_row

from core import batches, webhooks
from core.errors import InvalidInput
from core.queries import q
from core.settings import Settings
from core.webhook_guard import check_callback_url, shown_url
from webapp.db import caller, connection

bp = Blueprint("webhooks", __name__)


def callback_url_option(config: Settings, url: str | None) -> str | None:
    """The upload's callback_url (as given), checked (InvalidInput, a 400, if refused); None when
    not given."""
    if not url:  # an HTML form sends an empty field for "none"
        return None
    if caller().client is None and not config.webhook_secret:
        raise InvalidInput(
            "No webhook secret",
            "This service has no WEBHOOK_SECRET, and the upload comes with no API key (whose own webhook "
            "secret would sign it): its webhook could not be signed. Ask the operator to set one.",
            "webhook-secret-missing",
        )
    return check_callback_url(url, allow_private=config.webhook_allow_private)


@bp.get("/batch/<public_id>/webhooks")
def batch_webhooks(public_id: str) -> Response:
    """The batch's completion webhook: its event (once the batch finished) and every attempt."""
    with connection() as conn:
        batch = batches.get(conn, public_id)
        with conn.cursor(row_factory=class_row(webhooks.Delivery)) as cur:
            rows = cur.execute(q("webhook_events_deliveries"), {"public_id": public_id}).fetchall()
    return jsonify(webhooks.deliveries_json(public_id, shown_url(batch.callback_url), rows))


@bp.post("/batch/<public_id>/webhooks/retry")
def retry_batch_webhook(public_id: str) -> Response:
    """Send the batch's finished webhook again (202 and the deliveries, as GET shows them)."""
    with connection() as conn:
        batch = batches.get(conn, public_id)
        webhooks.retry(conn, batch)
        with conn.cursor(row_factory=class_row(webhooks.Delivery)) as cur:
            rows = cur.execute(q("webhook_events_deliveries"), {"public_id": public_id}).fetchall()
    answer = jsonify(webhooks.deliveries_json(public_id, shown_url(batch.callback_url), rows))
    answer.status_code = 202
    return answer


#: The upload's new parameter, for the OpenAPI document (query, and form field before the file).
CALLBACK_URL_PARAMETER: dict[str, Any] = {
    "name": "callback_url",
    "in": "query",
    "schema": {"type": "string", "format": "uri", "maxLength": 2048},
    "description": "An http(s) URL to POST a signed webhook to when the batch reaches a final state "
    "(completed, completed_with_errors, cancelled). Its host must resolve to public addresses only "
    "(unless WEBHOOK_ALLOW_PRIVATE); a form sends it as a field before the file.",
}

_WEBHOOK_HEADERS = {
    "webhook-id": "The event's id (msg_...), the same on every attempt: drop duplicates by it.",
    "webhook-timestamp": "The attempt's time, Unix seconds: refuse old ones.",
    "webhook-signature": "v1, and the base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}' keyed "
    "with the base64-decoded part of the whsec_ secret (the API key's own, else WEBHOOK_SECRET).",
}


def openapi_paths(problems: dict[str, Any]) -> dict[str, Any]:
    """The /batch/{batch_id}/webhooks paths; ``problems`` are their problem answers."""
    return {
        "/batch/{batch_id}/webhooks": {
            "get": {
                "summary": "A batch's completion webhook: its event and every delivery attempt",
                "parameters": [
                    {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The event (null until the batch finishes, or without a callback_url) "
                        "and its attempts, oldest first.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/WebhookDeliveries"}}
                        },
                    },
                    **problems,
                },
            }
        },
        "/batch/{batch_id}/webhooks/retry": {
            "post": {
                "summary": "Send a batch's finished webhook again",
                "description": "For a webhook delivered or given up: pending again and due now, with the "
                "same webhook-id and body, retried for WEBHOOK_RETRY_FOR from now.",
                "parameters": [
                    {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "202": {
                        "description": "Queued: the event (now pending) and its attempts so far.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/WebhookDeliveries"}}
                        },
                    },
                    # 409: no webhook (no callback_url, or not finished), or one still pending;
                    # 429: sent again less than a minute ago.
                    "409": {"$ref": "#/components/responses/Problem409"},
                    "429": {"$ref": "#/components/responses/Problem429"},
                    **problems,
                },
            }
        },
    }


def openapi_webhooks() -> dict[str, Any]:
    """The request a callback_url receives (OpenAPI 3.1 ``webhooks``)."""
    return {
        "batchFinished": {
            "post": {
                "summary": "A batch reached a final state",
                "description": "Sent by a runner at least once, retried with exponential backoff for "
                "WEBHOOK_RETRY_FOR (24 h) until a 2xx answers (410 Gone stops it). Redirects are not "
                "followed.",
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": text,
                    }
                    for name, text in _WEBHOOK_HEADERS.items()
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["type", "timestamp", "data"],
                                "properties": {
                                    "type": {"enum": list(webhooks.EVENT_TYPES)},
                                    "timestamp": {"type": "string", "format": "date-time"},
                                    "data": {"$ref": "#/components/schemas/Batch"},
                                },
                            }
                        }
                    },
                },
                "responses": {"2XX": {"description": "Received; nothing more is sent."}},
            }
        }
    }
