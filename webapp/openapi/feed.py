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
    "Content-Encoding": {
        "schema": {"const": "deflate"},
        "description": "Present when Accept-Encoding allowed deflate: the stream is one zlib stream, "
        "each event flushed as it is sent; only a whole stream ends the zlib stream.",
    },
    "Vary": {"schema": {"type": "string"}, "description": "Names Accept-Encoding: the body depends on it."},
}
#: What the client accepts: deflate (browsers, ``curl --compressed``) gets the stream compressed.
STREAM_ACCEPT_ENCODING = {
    "name": "Accept-Encoding",
    "in": "header",
    "schema": {"type": "string", "examples": ["deflate", "gzip, deflate, br", "identity"]},
    "description": "With deflate accepted (and weighed no lower than identity), the stream is "
    "deflate-compressed (about a quarter of the bytes); gzip alone is not used for streams.",
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
                    STREAM_ACCEPT_ENCODING,
                    query(
                        "last_event_id",
                        {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
                        "As the Last-Event-ID header, for a first connection that cannot set headers.",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The stream; it closes after `end`, or earlier (resume it).",
                        "headers": {
                            name: STREAM_HEADERS[name]
                            for name in ("Cache-Control", "Content-Encoding", "Vary")
                        },
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
