"""The follow endpoints: ``GET /batch/<id>/events`` (Server-Sent Events) and the NDJSON feed.

The view reads the batch as the caller (404 unless theirs), checks where the stream resumes,
then detaches the connection to this worker's hub (webapp.server.detach), past MAX_STREAMS
answering 503 with Retry-After. Where no hub can take the connection (the Flask test client,
``flask run``), the same follower runs in the request's thread instead. The NDJSON feed is not
cut at STREAM_MAX_SECONDS: its lines carry no event ids to resume from.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Response, request

from core import batches
from core.batches.feed import CommittedChunk, Position, follow_states, rows_after
from core.clients import API_TOKEN_HOLDER
from core.errors import InvalidInput
from webapp.db import WebPool, connection, get_pool, settings
from webapp.feed.follower import Follower
from webapp.feed.framing import Framing, JsonLines, ServerSentEvents
from webapp.feed.hub import Hub, process_hub
from webapp.problems import Problem
from webapp.replica import export_source
from webapp.server.detach import OFFER, TAKEN

bp = Blueprint("feed", __name__)


@bp.get("/batch/<public_id>/events")
def events(public_id: str) -> Response:
    """The batch's rows in commit order, with progress, as Server-Sent Events."""
    resume = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if resume is None:
        resume, name = request.args.get("last_event_id"), "last_event_id"
    after = Position.parse(resume, name)
    return follow(public_id, ServerSentEvents(), after, settings().stream_max_seconds)


def follow_ndjson(public_id: str) -> Response:
    """``results.ndjson?follow=true``: the rows as they commit, one line each, until the batch ends."""
    return follow(public_id, JsonLines(), Position(), None)


def _hub() -> Hub:
    config = settings()
    return process_hub(
        lambda: Hub(
            get_pool(),
            poll_seconds=config.follow_poll_seconds,
            write_timeout=config.client_timeout,
            max_streams=config.max_streams,
        )
    )


def follow(public_id: str, framing: Framing, after: Position, max_seconds: float | None) -> Response:
    with connection() as conn:
        batch = batches.get(conn, public_id)
    if after.seq > batch.commit_seq:
        raise InvalidInput(
            "Invalid event id",
            f"Event {after} is beyond this batch's last commit ({batch.commit_seq}): "
            "send back an event id this stream sent.",
            "invalid-event-id",
        )
    follower = Follower(batch.id, framing, export_source(), after)
    headers = {"Content-Type": framing.content_type, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # the head alone: nothing to follow
        return Response(status=200, headers=headers)
    if request.environ.get(OFFER):
        hub = _hub()
        if hub.full():
            detail = f"This server holds its most open streams ({hub.max_streams}); retry shortly."
            raise Problem(503, "Too many streams", detail, "too-many-streams", {"Retry-After": "2"})
        request.environ[TAKEN] = lambda sock: hub.take(sock, b"", follower, max_seconds)
        return Response(status=200, headers=headers)
    body = _in_thread(follower, get_pool(), settings().follow_poll_seconds)
    return Response(body, headers=headers)


def _in_thread(follower: Follower, pool: WebPool, poll_seconds: float) -> Iterator[bytes]:
    """The follower served by the request's own thread, polling alone (no hub here)."""
    source = follower.source
    yield follower.framing.start()

    def read(batch: batches.Batch, after: Position, chunks: int) -> list[CommittedChunk]:
        with source.connection(batch) as conn:
            return rows_after(conn, batch, after, chunks)

    while True:
        with pool.caller_connection(API_TOKEN_HOLDER) as conn:
            state = follow_states(conn, [follower.batch_id]).get(follower.batch_id)
        while True:
            out = follower.step(state, read)
            if out:
                yield out
            if not follower.behind:
                break
        if follower.ended:
            return
        time.sleep(poll_seconds)
