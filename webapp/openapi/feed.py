"""The follow operations of the OpenAPI document: the events stream and the NDJSON feed."""

from __future__ import annotations

from typing import Any

from webapp.openapi.common import BATCH_ID, problem_answers, query

EVENTS_DESCRIPTION = """\
The batch's rows in the order they commit, as Server-Sent Events (`EventSource`, `curl -N`):

- `event: progress`, `data`: the batch, as `GET /batch/{batch_id}` shows it (again as its counts change);
- `event: rows`, `id: <event id>`, `data`: `{"rows": [...]}`, one committed chunk's rows, each shaped as an
  item of a results page;
- `event: end`, `data`: the final batch; then the stream closes.

A stream that ends without `end` (after `STREAM_MAX_SECONDS`, or a server restart) is resumed with
`Last-Event-ID`: the rows after that event, none twice, none missed. A stream opened after the batch
finished replays every row, then ends. Example: `curl -N -H 'Accept: text/event-stream'
http://127.0.0.1:8000/batch/{batch_id}/events`."""

LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "schema": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
    "description": "Resume after this event (the `id` of the last `rows` event received).",
}
#: One event of the stream (as SSE parsers hand them over); ``data`` is JSON.
EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["progress", "rows", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
    },
}
STREAM_HEADERS = {
    "Cache-Control": {"schema": {"const": "no-store"}},
    "Retry-After": {"schema": {"type": "string"}, "description": "On a 503: seconds to wait."},
}


def feed_paths() -> dict[str, Any]:
    """``/batch/{batch_id}/events``."""
    return {
        "/batch/{batch_id}/events": {
            "get": {
                "summary": "Follow a batch: its rows as they are scored, with progress (Server-Sent Events)",
                "description": EVENTS_DESCRIPTION,
                "parameters": [
                    BATCH_ID,
                    LAST_EVENT_ID,
                    query(
                        "last_event_id",
                        {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
                        "As the Last-Event-ID header, for a first connection that cannot set headers.",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The stream; it closes after `end`, or earlier (resume it).",
                        "headers": {"Cache-Control": STREAM_HEADERS["Cache-Control"]},
                        "content": {"text/event-stream": {"schema": EVENT}},
                    },
                    **problem_answers("400", "401", "404", "503"),
                },
            }
        }
    }


#: ``results.ndjson``'s ``follow`` parameter.
FOLLOW = query(
    "follow",
    {"type": "boolean"},
    "true: the rows as they commit, one line each, while the batch runs; the body ends when the batch "
    "is final (no 409 while it processes). `curl -N '.../results.ndjson?follow=true'`.",
)
