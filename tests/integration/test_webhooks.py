"""Completion webhooks against a real receiver, real runners and a real PostgreSQL.

The receiver is an http.server on loopback that checks every signature itself
(HMAC-SHA256 of "id.timestamp.body" with the secret, as any Standard Webhooks
library does); the runners are real ``python -m jobrunner`` processes with the
SSRF guard lifted (WEBHOOK_ALLOW_PRIVATE) unless a test is about the guard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from core import webhooks
from tests.helpers import make_csv, wait_for
from tests.integration.helpers import post_file, upload_file
from webapp import create_app

SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
RUNNER_ENV = {
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_RETRY_SECONDS": "0.2",
    "WEBHOOK_CONNECT_TIMEOUT": "2",
    "WEBHOOK_READ_TIMEOUT": "10",
}


def signed_by(secret: str, request: dict) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{request['webhook-id']}.{request['webhook-timestamp']}.".encode() + request["body"]
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, given) for given in request["webhook-signature"].split())


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request, answers from a script (then 200);
    with ``hold_first`` it keeps the first request open until ``release`` is set."""

    def __init__(self, answers: list[int] | None = None, hold_first: bool = False) -> None:
        self.requests: list[dict] = []
        self.answers = list(answers or [])
        self.hold_first = hold_first
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    held = receiver.hold_first and not receiver.requests
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    record = {name.lower(): value for name, value in self.headers.items()}
                    record.update(body=body, path=self.path, status=status, held=held)
                    receiver.requests.append(record)
                if held:
                    receiver.arrived.set()
                    receiver.release.wait(120)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the runner was killed while we held its request

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook?token=s3cret"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:  # type: ignore[no-untyped-def]
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for one in made:
        one.stop()


@pytest.fixture
def web(database_url):  # type: ignore[no-untyped-def]
    """The app (test client) with WEBHOOK_SECRET; private callbacks allowed unless a test says not."""
    apps = []

    def make(allow_private: bool = True):  # type: ignore[no-untyped-def]
        config = {"database_url": database_url, "migrate_on_start": False, "webhook_secret": SECRET}
        apps.append(create_app({**config, "webhook_allow_private": allow_private}))
        return apps[-1].test_client()

    yield make
    for app in apps:
        app.extensions["db_pool"].close()


#: 30 rows: one chunk, one webhook.
GOOD = make_csv(["good"] * 30)


def event_state(db, batch_id: str):  # type: ignore[no-untyped-def]
    row = db.execute(
        "SELECT e.state FROM webhook_events e JOIN batches b ON b.id = e.batch_id WHERE b.public_id = %s",
        (batch_id,),
    ).fetchone()
    return row[0] if row else None


def test_a_signed_webhook_is_retried_after_two_500s_and_ends_at_the_first_200(web, receiver, runners, db):
    hook = receiver(answers=[500, 500])
    client = web()
    answer = post_file(client, GOOD, fields={"callback_url": hook.url()})
    assert answer.status_code == 202, answer.get_json()
    batch_id = answer.get_json()["batch_id"]
    assert (
        answer.get_json()["callback_url"] == f"http://127.0.0.1:{hook.port}/hook"
    )  # no query: it may hold a token
    runners.start(**RUNNER_ENV)
    wait_for(lambda: event_state(db, batch_id) == "delivered", timeout=120)

    received = hook.received()
    assert [r["status"] for r in received] == [500, 500, 200]
    assert all(signed_by(SECRET, r) for r in received)
    assert len({r["webhook-id"] for r in received}) == 1  # one event, whatever the attempt
    assert len({r["body"] for r in received}) == 1  # the very same bytes every time
    assert all(
        r["path"] == "/hook?token=s3cret" and r["content-type"] == "application/json" for r in received
    )
    event = json.loads(received[0]["body"])
    batch = client.get(f"/batch/{batch_id}").get_json()
    # The batch as GET /batch/<id> shows it, its summary's three counts without the histogram.
    batch["summary"] = {name: batch["summary"][name] for name in ("positive", "negative", "neutral")}
    assert event == {"type": "batch.completed", "timestamp": batch["completed_at"], "data": batch}

    shown = client.get(f"/batch/{batch_id}/webhooks").get_json()
    assert shown["event"]["webhook_id"] == received[0]["webhook-id"]
    assert shown["event"]["state"] == "delivered" and shown["event"]["type"] == "batch.completed"
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in shown["attempts"]] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 200, "delivered"),
    ]
    in_psql = db.execute(
        "SELECT count(*) FILTER (WHERE outcome = 'delivered'), count(*) FROM webhook_deliveries "
        "WHERE batch = %s",
        (batch_id,),
    ).fetchone()
    assert tuple(in_psql) == (1, 3)  # exactly one success recorded


def test_cancel_writes_batch_cancelled_in_its_own_statement_and_a_runner_sends_it(web, receiver, runners, db):
    hook = receiver()
    client = web()
    batch_id = upload_file(client, make_csv(["good"] * 500), fields={"callback_url": hook.url()})["batch_id"]
    assert client.post(f"/batch/{batch_id}/cancel").status_code == 200
    # Written by the cancel, before any runner exists.
    assert db.execute("SELECT type, state FROM webhook_events").fetchall() == [("batch.cancelled", "pending")]
    assert client.get(f"/batch/{batch_id}/webhooks").get_json()["attempts"] == []
    runners.start(**RUNNER_ENV)
    wait_for(lambda: event_state(db, batch_id) == "delivered", timeout=120)
    [request] = hook.received()
    assert signed_by(SECRET, request)
    event = json.loads(request["body"])
    assert event["type"] == "batch.cancelled" and event["data"]["status"] == "cancelled"
    assert event["data"]["batch_id"] == batch_id


def test_a_runner_killed_while_delivering_loses_no_event_and_its_duplicate_has_the_same_id(
    web, receiver, runners, db
):
    hook = receiver(hold_first=True)
    client = web()
    ids = [upload_file(client, GOOD, fields={"callback_url": hook.url()})["batch_id"] for _ in range(3)]
    procs = [runners.start(**RUNNER_ENV) for _ in range(2)]
    assert hook.arrived.wait(120)
    held_id = hook.received()[0]["webhook-id"]
    holder = db.execute("SELECT claimed_by FROM webhook_events WHERE webhook_id = %s", (held_id,)).fetchone()[
        0
    ]
    [victim] = [p for p in procs if holder.endswith(f":{p.pid}")]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    hook.release.set()
    # The other runner takes the event over once the dead one's lease runs out.
    wait_for(lambda: all(event_state(db, b) == "delivered" for b in ids), timeout=180)

    received = hook.received()
    assert all(signed_by(SECRET, r) for r in received)
    by_id: dict[str, list[dict]] = {}
    for request in received:
        by_id.setdefault(request["webhook-id"], []).append(request)
    events = db.execute("SELECT webhook_id FROM webhook_events").fetchall()
    assert set(by_id) == {row[0] for row in events} and len(by_id) == 3  # none lost
    assert len(by_id[held_id]) >= 2  # sent again after the kill, under the same webhook-id ...
    assert len({r["body"] for r in by_id[held_id]}) == 1  # ... with the same body
    attempts = db.execute(
        "SELECT attempt, outcome, runner FROM webhook_deliveries WHERE webhook_id = %s ORDER BY attempt",
        (held_id,),
    ).fetchall()
    assert attempts[0][1:] == ("interrupted", holder)
    assert attempts[-1][1] == "delivered" and attempts[-1][2] != holder


def test_the_guard_refuses_private_and_metadata_callbacks_at_upload(web, receiver, db):
    hook = receiver()
    client = web(allow_private=False)
    for url, slug in [
        (hook.url(), "callback-url-refused"),
        (hook.url("localhost"), "callback-url-refused"),
        ("http://169.254.169.254/latest/meta-data/", "callback-url-refused"),
        ("http://[fd00:ec2::254]/", "callback-url-refused"),
        ("http://10.0.0.7/hook", "callback-url-refused"),
        ("ftp://example.com/hook", "invalid-callback-url"),
        ("http://user:pw@example.com/hook", "invalid-callback-url"),
    ]:
        answer = post_file(client, GOOD, fields={"callback_url": url})
        assert answer.status_code == 400, (url, answer.get_json())
        assert answer.content_type == "application/problem+json"
        assert answer.get_json()["type"] == f"/problems/{slug}", url
        raw = client.post(
            f"/batch/upload?callback_url={url}", data=make_csv(["good"]), content_type="text/csv"
        )
        assert raw.status_code == 400 and raw.get_json()["type"] == f"/problems/{slug}", url
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0  # nothing stored
    assert hook.received() == []


def test_the_guard_refuses_a_name_that_resolves_to_loopback_when_delivering(web, receiver, runners, db):
    hook = receiver()
    client = web(allow_private=True)  # accepted at upload (say the name resolved elsewhere then) ...
    batch_id = upload_file(client, GOOD, fields={"callback_url": hook.url("localhost")})["batch_id"]
    runners.start(**{**RUNNER_ENV, "WEBHOOK_ALLOW_PRIVATE": "false"})  # ... refused when connecting

    def attempts():  # type: ignore[no-untyped-def]
        return [
            a
            for a in client.get(f"/batch/{batch_id}/webhooks").get_json()["attempts"]
            if a["outcome"] == "failed"
        ]

    [first, *_] = wait_for(attempts, timeout=120)
    assert first["status_code"] is None
    assert "refused" in first["error"] and "public addresses only" in first["error"]
    # What a name resolves to, or what kind of address it is, is never told.
    assert "127.0.0.1" not in first["error"] and "loopback" not in first["error"]
    assert event_state(db, batch_id) == "pending"  # tried again later, up to WEBHOOK_RETRY_FOR
    assert hook.received() == []


def test_a_slow_receiver_holds_up_one_deliverer_not_the_others(web, receiver, runners, db):
    slow, fast = receiver(hold_first=True), receiver()
    client = web()
    held = upload_file(client, GOOD, fields={"callback_url": slow.url()})["batch_id"]
    runners.start(**{**RUNNER_ENV, "WEBHOOK_CONCURRENCY": "2", "WEBHOOK_READ_TIMEOUT": "60"})
    assert slow.arrived.wait(120)  # one deliverer is inside that attempt ...
    other = upload_file(client, GOOD, fields={"callback_url": fast.url()})["batch_id"]
    wait_for(lambda: event_state(db, other) == "delivered", timeout=120)  # ... the other sends this one
    assert event_state(db, held) == "pending" and not slow.release.is_set()
    in_progress = db.execute("SELECT count(*) FROM webhook_attempts WHERE finished_at IS NULL").fetchone()[0]
    assert in_progress == 1
    slow.release.set()
    wait_for(lambda: event_state(db, held) == "delivered", timeout=120)


def test_a_webhook_given_up_is_sent_again_on_its_owners_request(web, receiver, runners, db):
    from core import clients

    alice, bob = clients.create_key(db, "alice"), clients.create_key(db, "bob")
    as_alice, as_bob = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}
    hook = receiver(answers=[410])  # Gone: given up at once; then 200s
    client = web()
    batch_id = upload_file(client, GOOD, fields={"callback_url": hook.url()}, key=alice)["batch_id"]
    path = f"/batch/{batch_id}/webhooks/retry"
    assert client.post(path, headers=as_alice).get_json()["type"] == "/problems/no-webhook"  # not finished
    runners.start(**RUNNER_ENV)
    wait_for(lambda: event_state(db, batch_id) == "failed", timeout=120)
    # Days and many attempts later: WEBHOOK_RETRY_FOR counts from the request, not from the event,
    # and backoff from the attempts since (after 40 attempts it would wait an hour).
    db.execute("UPDATE webhook_events SET created_at = now() - interval '3 days', attempts = attempts + 40")
    assert client.post(path, headers=as_bob).status_code == 404  # another client's batch
    hook.answers = [500]  # the first new attempt fails: tried again, not given up
    with psycopg.connect(db.info.dsn, autocommit=True) as listener:
        listener.execute("LISTEN webhook_events")
        retried = client.post(path, headers=as_alice)
        # The deliverers are woken (NOTIFY), not left to their next poll.
        assert [n.channel for n in listener.notifies(timeout=30, stop_after=1)] == ["webhook_events"]
    assert retried.status_code == 202 and retried.get_json()["event"]["state"] == "pending"
    again = client.post(path, headers=as_alice)
    assert again.status_code == 409 and again.get_json()["type"] == "/problems/webhook-pending"
    wait_for(lambda: event_state(db, batch_id) == "delivered", timeout=120)
    too_soon = client.post(path, headers=as_alice)  # delivered, but retried a moment ago
    assert too_soon.status_code == 429 and too_soon.headers["Retry-After"] == "60"
    received = hook.received()
    assert [r["status"] for r in received] == [410, 500, 200]
    assert len({r["webhook-id"] for r in received}) == 1 and len({r["body"] for r in received}) == 1
    shown = client.get(f"/batch/{batch_id}/webhooks", headers=as_alice).get_json()
    assert [a["status_code"] for a in shown["attempts"]] == [410, 500, 200]
    no_hook = client.post(
        "/batch/upload", data=make_csv(["good"]), content_type="text/csv", headers=as_alice
    ).get_json()["batch_id"]
    refused = client.post(f"/batch/{no_hook}/webhooks/retry", headers=as_alice)
    assert refused.status_code == 409 and "callback_url" in refused.get_json()["detail"]


def test_a_replaced_secret_signs_beside_the_new_one_for_the_overlap(web, receiver, runners, db):
    from core import clients

    alice = clients.create_key(db, "alice")
    old = webhooks.give_secret(db, "alice").secret
    rotation = webhooks.give_secret(db, "alice", overlap_seconds=3600)
    assert rotation.previous_until is not None and rotation.secret != old
    hook = receiver()
    client = web()
    during = upload_file(client, GOOD, fields={"callback_url": hook.url()}, key=alice)["batch_id"]
    runners.start(**RUNNER_ENV)
    wait_for(lambda: event_state(db, during) == "delivered", timeout=120)
    [first] = hook.received()
    # Two signatures: a receiver that has switched and one that has not both accept it.
    assert len(first["webhook-signature"].split()) == 2
    assert signed_by(rotation.secret, first) and signed_by(old, first) and not signed_by(SECRET, first)
    # Once the overlap is over, the new secret alone signs.
    db.execute("UPDATE webhook_secrets SET previous_until = now() - interval '1 second'")
    after = upload_file(client, GOOD, fields={"callback_url": hook.url()}, key=alice)["batch_id"]
    wait_for(lambda: event_state(db, after) == "delivered", timeout=120)
    second = hook.received()[-1]
    assert second["webhook-signature"].count("v1,") == 1
    assert signed_by(rotation.secret, second) and not signed_by(old, second)


def test_a_keys_first_own_secret_overlaps_with_webhook_secret(web, receiver, runners, db):
    # A key made before webhooks existed: WEBHOOK_SECRET signed its webhooks until now.
    from core import clients

    legacy = clients.create_key(db, "legacy")
    rotation = webhooks.give_secret(db, "legacy", overlap_seconds=3600)
    assert rotation.previous_until is not None
    hook = receiver()
    batch_id = upload_file(web(), GOOD, fields={"callback_url": hook.url()}, key=legacy)["batch_id"]
    runners.start(**RUNNER_ENV)
    wait_for(lambda: event_state(db, batch_id) == "delivered", timeout=120)
    [request] = hook.received()
    assert signed_by(rotation.secret, request) and signed_by(SECRET, request)


def test_a_keys_own_secret_signs_its_webhooks_and_only_its_owner_sees_them(web, receiver, runners, db):
    from core import clients

    alice, bob = clients.create_key(db, "alice"), clients.create_key(db, "bob")
    alice_secret = webhooks.give_secret(db, "alice").secret
    hook = receiver()
    client = web()
    as_alice = {"Authorization": f"Bearer {alice}"}
    batch_id = upload_file(client, GOOD, fields={"callback_url": hook.url()}, key=alice)["batch_id"]
    # A client's cancel writes the event as the client's role, under row-level security.
    cancelled = upload_file(client, GOOD, fields={"callback_url": hook.url()}, key=alice)["batch_id"]
    assert client.post(f"/batch/{cancelled}/cancel", headers=as_alice).status_code == 200
    runners.start(**RUNNER_ENV)
    wait_for(lambda: {event_state(db, batch_id), event_state(db, cancelled)} == {"delivered"}, timeout=120)
    received = hook.received()
    assert sorted(json.loads(r["body"])["type"] for r in received) == ["batch.cancelled", "batch.completed"]
    assert all(signed_by(alice_secret, r) and not signed_by(SECRET, r) for r in received)
    path = f"/batch/{batch_id}/webhooks"
    assert client.get(path, headers={"Authorization": f"Bearer {alice}"}).status_code == 200
    assert client.get(path, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
