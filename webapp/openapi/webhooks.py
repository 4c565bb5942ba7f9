"""The completion webhook in the OpenAPI document: the upload's ``callback_url``, the two
``/batch/{batch_id}/webhooks`` paths, and the request a callback URL receives."""

from __future__ import annotations

from typing import Any

from core import webhooks
from webapp.openapi.common import BATCH_ID, json_answer, problem_answers, query, ref

#: The upload's callback_url: a query parameter, or a form field before the file.
CALLBACK_URL_PARAMETER = query(
    "callback_url",
    {"type": "string", "format": "uri", "maxLength": 2048},
    "An http(s) URL to POST a signed webhook to when the batch reaches a final state "
    "(completed, completed_with_errors, cancelled). Its host must resolve to public addresses only "
    "(unless WEBHOOK_ALLOW_PRIVATE); a form sends it as a field before the file.",
)

_WEBHOOK_HEADERS = {
    "webhook-id": "The event's id (msg_...), the same on every attempt: drop duplicates by it.",
    "webhook-timestamp": "The attempt's time, Unix seconds: refuse old ones.",
    "webhook-signature": "v1, and the base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}' keyed "
    "with the base64-decoded part of the whsec_ secret (the API key's own, else WEBHOOK_SECRET).",
}


def webhook_paths() -> dict[str, Any]:
    """GET /batch/{batch_id}/webhooks and POST /batch/{batch_id}/webhooks/retry."""
    deliveries = ref("WebhookDeliveries")
    return {
        "/batch/{batch_id}/webhooks": {
            "get": {
                "summary": "A batch's completion webhook: its event and every delivery attempt",
                "parameters": [BATCH_ID],
                "responses": {
                    "200": json_answer(
                        deliveries,
                        "The event (null until the batch finishes, or without a callback_url) "
                        "and its attempts, oldest first.",
                    ),
                    **problem_answers("401", "404", "503"),
                },
            }
        },
        "/batch/{batch_id}/webhooks/retry": {
            "post": {
                "summary": "Send a batch's finished webhook again",
                "description": "For a webhook delivered or given up: pending again and due now, with the "
                "same webhook-id and body, retried for WEBHOOK_RETRY_FOR from now.",
                "parameters": [BATCH_ID],
                "responses": {
                    "202": json_answer(
                        deliveries, "Queued: the event (now pending) and its attempts so far."
                    ),
                    # 409: no webhook (no callback_url, or not finished), or one still pending;
                    # 429: sent again less than a minute ago.
                    **problem_answers("409", "429", "401", "404", "503"),
                },
            }
        },
    }


def webhook_events() -> dict[str, Any]:
    """The request a callback_url receives (OpenAPI 3.1 ``webhooks``)."""
    headers = [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in _WEBHOOK_HEADERS.items()
    ]
    body = {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"enum": list(webhooks.EVENT_TYPES)},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": ref("Batch"),
        },
    }
    return {
        "batchFinished": {
            "post": {
                "summary": "A batch reached a final state",
                "description": "Sent by a runner at least once, retried with exponential backoff for "
                "WEBHOOK_RETRY_FOR (24 h) until a 2xx answers (410 Gone stops it). Redirects are not "
                "followed.",
                "parameters": headers,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"2XX": {"description": "Received; nothing more is sent."}},
            }
        }
    }
