"""Completion webhooks on the web side: the upload's ``callback_url``, and ``GET /batch/<id>/webhooks``.

An upload may name a ``callback_url`` (a form field before the file, or a query
parameter with a raw body). It is checked before the body is read: its form,
then its host's addresses (the SSRF guard, :mod:`core.webhook_guard`); a
refused one is a 400 and nothing is stored. A key past WEBHOOK_MAX_PENDING is
refused (429) by the upload's transaction, also before the body is read
(:func:`core.batches.quota.check_webhooks`). Runners deliver the webhook
(``jobrunner/webhooks.py``); this view shows the event and its attempts,
owner-scoped like every ``/batch/<id>`` endpoint (the transaction runs as the
caller, and row-level security hides other clients' events).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from psycopg.rows import class_row

from core import batches, webhooks
from core.errors import InvalidInput
from core.queries import q
from core.settings import Settings
from core.webhook_guard import check_callback_url, shown_url
from webapp.db import caller, connection, settings

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
    return check_callback_url(
        url,
        allow_private=config.webhook_allow_private,
        timeout=config.webhook_connect_timeout,
        owner=caller().name,
    )


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
        webhooks.retry(conn, batch, settings().webhook_max_pending)
        with conn.cursor(row_factory=class_row(webhooks.Delivery)) as cur:
            rows = cur.execute(q("webhook_events_deliveries"), {"public_id": public_id}).fetchall()
    answer = jsonify(webhooks.deliveries_json(public_id, shown_url(batch.callback_url), rows))
    answer.status_code = 202
    return answer
