"""The follow endpoints: ``GET /batch/<id>/events`` (Server-Sent Events) and the NDJSON feed.

The view reads the batch as the caller (404 unless theirs), checks where the stream resumes,
then detaches the connection to this worker's hub (webapp.server.detach), past MAX_STREAMS
answering 503 with Retry-After; a client that accepts deflate gets the stream deflated. Where no
hub can take the connection (the Flask test client, ``flask run``), the same follower runs in the
request's thread instead, uncompressed. The NDJSON feed is not cut at STREAM_MAX_SECONDS: its
lines carry no event ids to resume from. A HEAD is answered with the head a GET would get.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

from flask import Blueprint, Response, request

from core import batches
from core.batches.feed import DurableStates, Position, check_resume, poll
from core.clients import API_TOKEN_HOLDER
from webapp.db import WebPool, caller, connection, get_pool, settings
from webapp.feed.encoding import Identity, encoder_for
from webapp.feed.follower import Follower, reader
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
    return process_hub(lambda: Hub(get_pool(), settings()))


def follow(public_id: str, framing: Framing, after: Position, max_seconds: float | None) -> Response:
    with connection() as conn:
        batch = batches.get(conn, public_id)
        check_resume(conn, batch, after)
    follower = Follower(batch.id, framing, export_source(), after)
    headers = {"Content-Type": framing.content_type, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    headers["Vary"] = "Accept-Encoding"
    # Deflated only where the hub serves the stream: it shares each chunk's compressed bytes.
    encoder = encoder_for(bool(request.environ.get(OFFER)) and _wants_deflate())
    if encoder.content_encoding:
        headers["Content-Encoding"] = encoder.content_encoding
    if request.method == "HEAD":  # the head alone: nothing to follow
        head = Response(status=200, headers=headers)
        # A GET's body has no length (it is chunked, or ends at the close): the head names none.
        head.automatically_set_content_length = False
        return head
    if request.environ.get(OFFER):
        hub, who = _hub(), caller()
        if hub.full(who):
            detail = (
                f"This server holds its most open streams ({hub.config.max_streams}, one key at most half of "
                "them), or is restarting; retry shortly."
            )
            raise Problem(503, "Too many streams", detail, "too-many-streams", {"Retry-After": "2"})
        request.environ[TAKEN] = partial(
            hub.take, follower=follower, who=who, max_seconds=max_seconds, encoder=encoder
        )
        return Response(status=200, headers=headers)
    return Response(_in_thread(follower, get_pool(), settings().follow_poll_seconds), headers=headers)


def _wants_deflate() -> bool:
    """Whether the client accepts deflate (RFC 9110's Accept-Encoding: ``*`` names any coding it
    does not list) and weighs it no lower than the body as it is (``identity``, which weighs
    nothing here unless named or covered by ``*``)."""
    accepted = request.accept_encodings
    return accepted["deflate"] > 0 and accepted["deflate"] >= accepted["identity"]


def _in_thread(follower: Follower, pool: WebPool, poll_seconds: float) -> Iterator[bytes]:
    """The follower served by the request's own thread, polling alone (no hub here)."""
    read, durable = reader(follower.source, export=follower.framing.export), DurableStates()
    body = Identity()
    yield body.encode(follower.framing.start())
    while not follower.ended:
        with pool.caller_connection(API_TOKEN_HOLDER) as conn:
            durable.add(poll(conn, [follower.batch_id]))
        if durable.seen(follower.batch_id):
            yield b"".join(map(body.encode, follower.step(durable.states.get(follower.batch_id), read)))
            while follower.behind and not follower.ended:
                yield b"".join(map(body.encode, follower.step(durable.states.get(follower.batch_id), read)))
        if not follower.ended:
            time.sleep(poll_seconds)
