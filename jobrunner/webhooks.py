"""Delivering completion webhooks: each runner's deliverer threads, at least once, with backoff.

Every runner runs WEBHOOK_CONCURRENCY deliverer threads (started and restarted by
housekeeping, :func:`ensure_running`), each on a connection of its own, so a slow
receiver holds up one deliverer, never scoring or every other webhook. A deliverer
claims a due event of the outbox ``webhook_events``, the clients taking turns (one key's
backlog waits behind every other key's next webhook), under a lease as long as one
attempt can take (:func:`lease_seconds`), so a runner killed mid-attempt costs a
duplicate with the same ``webhook-id``, never the event. It resolves and checks the
host (:mod:`core.webhook_guard`) and connects to a checked address, never to the name
again, the lookup and the connection within WEBHOOK_CONNECT_TIMEOUT together. Outcomes,
backoff and limits: docs/webhooks.md, "Delivery, at least once". A write refused for a
full disk is tried again on the same connection with the same backoff, logged once per
period (``core.disk_full``).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row, namedtuple_row

from core import webhooks
from core.batches.model import Batch
from core.batches.store import batch_statement
from core.connections import SESSION_LOST, conninfo
from core.disk_full import OncePer, is_disk_full
from core.errors import InvalidInput
from core.queries import q
from core.settings import Settings
from core.webhook_guard import Address, LookupTimedOut, Target, parse_callback_url, resolve

log = logging.getLogger(__name__)

CHANNEL = "webhook_events"
#: Most of an answer's body that is read (and then dropped).
MAX_ANSWER_BYTES = 4096
#: The longest wait between two attempts, however many failed.
MAX_BACKOFF_SECONDS = 3600.0
#: Room in a lease beyond the connect and read timeouts: signing, the database.
LEASE_ROOM_SECONDS = 5.0
_ERROR_CHARS = 500

_started: list[threading.Thread] = []
_start_lock = threading.Lock()


def ensure_running(settings: Settings) -> None:
    """Start this process's WEBHOOK_CONCURRENCY deliverer threads, and any that stopped again
    (called by every housekeeping turn)."""
    with _start_lock:
        _started[:] = [thread for thread in _started if thread.is_alive()]
        if len(_started) >= settings.webhook_concurrency:
            return
        from jobrunner.identity import default_runner_name

        name = settings.runner_name or default_runner_name()
        while len(_started) < settings.webhook_concurrency:
            label = f"webhooks-{len(_started) + 1}"
            thread = threading.Thread(target=Deliverer(settings, name).run, name=label, daemon=True)
            thread.start()
            _started.append(thread)


@dataclass
class Answer:
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def lease_seconds(settings: Settings) -> float:
    """The longest one attempt can take: look up and connect, then send and read, plus room."""
    return settings.webhook_connect_timeout + settings.webhook_read_timeout + LEASE_ROOM_SECONDS


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """The wait after failed attempt number ``attempt`` (counted since the last retry, if any)."""
    # 2 ** 30 is past any MAX_BACKOFF_SECONDS already: no overflow however many attempts were made.
    delay = min(settings.webhook_retry_seconds * 2 ** min(max(attempt, 1) - 1, 30), MAX_BACKOFF_SECONDS)
    delay *= 1 + random.random() / 5
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_BACKOFF_SECONDS))
    return delay


class Deliverer:
    """Claims due events one at a time and delivers them; reconnects after a lost connection."""

    def __init__(self, settings: Settings, runner: str) -> None:
        self.settings = settings
        self.runner = runner
        self.disk_full = OncePer(log, "webhook deliveries' writes")

    def run(self) -> None:
        pause = 0.5
        while True:
            try:
                # connect_timeout: a path that silently drops SYNs would otherwise hold it ~2 minutes.
                with psycopg.connect(
                    conninfo(self.settings, "runner"), autocommit=True, connect_timeout=10
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    pause = 0.5
                    while True:
                        try:
                            if not self.attempt_one(conn):
                                self._wait(conn)
                        except psycopg.Error as exc:
                            if not is_disk_full(exc) or conn.broken:
                                raise
                            self.disk_full.refused(exc, f"tried again in {pause:.1f}s")
                            time.sleep(pause)
                            pause = min(pause * 2, 5.0)
                        else:
                            self.disk_full.cleared()
                            pause = 0.5
            except SESSION_LOST as exc:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("webhooks: database unavailable (%s); retrying in %.1fs", first_line, pause)
            except Exception:  # a bug: logged; the lease of what was in hand expires, nothing is lost
                log.exception("webhooks: the deliverer failed; starting over in %.1fs", pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _wait(self, conn: psycopg.Connection) -> None:
        seconds = conn.execute(q("webhook_events_next_due")).fetchone()[0]
        timeout = self.settings.poll_seconds if seconds is None else min(seconds, self.settings.poll_seconds)
        if timeout > 0:
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass

    def attempt_one(self, conn: psycopg.Connection) -> bool:
        """Claim the next due event and make one attempt; False if none is due."""
        params = {"runner": self.runner, "lease_seconds": lease_seconds(self.settings)}
        with conn.cursor(row_factory=namedtuple_row) as cur:
            event = cur.execute(q("webhook_events_claim"), params).fetchone()
        if event is None:
            return False
        started = time.monotonic()
        body = event.body if event.body is not None else self._fix_body(conn, event)
        if body is None:
            return (
                True  # the lease went meanwhile (only a very slow database does that); someone else goes on
            )
        key_secrets = [secret for secret in (event.key_secret, event.key_previous_secret) if secret]
        if event.key_replaced_service_secret:
            key_secrets += self.settings.webhook_secret.split()
        answer = self.send(event.callback_url, event.webhook_id, body, key_secrets, owner=event.client)
        duration_ms = round((time.monotonic() - started) * 1000)
        delivered = answer.status_code is not None and 200 <= answer.status_code <= 299
        outcome = answer.error or f"HTTP {answer.status_code}"
        record = {
            "event_id": event.id,
            "attempt": event.attempt,
            "lease_token": event.lease_token,
            "duration_ms": duration_ms,
            "status_code": answer.status_code,
            "error": answer.error,
            "outcome": outcome,
            "delivered": delivered,
            "gone": answer.status_code == 410,
            "backoff_seconds": backoff_seconds(self.settings, event.attempt_since_retry, answer.retry_after),
            "retry_for_seconds": self.settings.webhook_retry_for,
        }
        row = conn.execute(q("webhook_events_record"), record).fetchone()
        state = row[0] if row else "(lease lost)"
        level = logging.INFO if delivered else logging.WARNING
        log.log(
            level,
            "webhook %s (%s) attempt %d: %s in %d ms; now %s",
            event.webhook_id,
            event.type,
            event.attempt,
            outcome,
            duration_ms,
            state,
            extra={"webhook_id": event.webhook_id, "attempt": event.attempt, "duration_ms": duration_ms},
        )
        return True

    def _fix_body(self, conn: psycopg.Connection, event) -> str | None:  # type: ignore[no-untyped-def]
        with conn.cursor(row_factory=class_row(Batch)) as cur:
            batch = cur.execute(
                batch_statement("webhook_events_batch"), {"batch_id": event.batch_id}
            ).fetchone()
        params = {"event_id": event.id, "lease_token": event.lease_token, "body": webhooks.body(batch)}
        row = conn.execute(q("webhook_events_fix_body"), params).fetchone()
        return row[0] if row else None

    def send(
        self, url: str, webhook_id: str, body: str, key_secrets: list[str], owner: str | None = None
    ) -> Answer:
        """One attempt: sign (with the key's secrets, else WEBHOOK_SECRET's), check, connect, POST;
        the answer's status, or why there is none. ``owner``: the batch's key, whose lookups are
        bounded apart from other keys' (core.webhook_guard)."""
        secrets = key_secrets or self.settings.webhook_secret.split()
        if not secrets:
            return Answer(
                error="no signing secret: set WEBHOOK_SECRET, or give the key one (keys webhook-secret)"
            )
        payload = body.encode()
        try:
            headers = webhooks.headers(secrets, webhook_id, int(time.time()), payload)
        except ValueError as exc:
            return Answer(error=f"the signing secret is unusable: {exc}")
        # The lookup and the connection share WEBHOOK_CONNECT_TIMEOUT: a silent resolver is a
        # failed attempt like a silent receiver, and no attempt outlives its lease.
        connect_by = time.monotonic() + self.settings.webhook_connect_timeout
        try:
            target = parse_callback_url(url)
            addresses = resolve(
                target,
                allow_private=self.settings.webhook_allow_private,
                timeout=self.settings.webhook_connect_timeout,
                owner=owner,
            )
        except LookupTimedOut:
            return Answer(error=f"timed out: callback_url's host {target.host!r} did not resolve in time")
        except InvalidInput as exc:
            log.info("webhook %s refused: %s", webhook_id, getattr(exc, "reason", exc.detail))
            return Answer(error=f"refused: {exc.detail}"[:_ERROR_CHARS])  # the reason is not told
        try:
            return self._post(target, addresses, headers, payload, connect_by)
        except TimeoutError:
            return Answer(error="timed out")
        except ssl.SSLError as exc:
            return Answer(error=f"TLS: {exc}"[:_ERROR_CHARS])
        except (OSError, http.client.HTTPException) as exc:
            return Answer(error=f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS])

    def _post(
        self,
        target: Target,
        addresses: list[Address],
        headers: dict[str, str],
        payload: bytes,
        connect_by: float,
    ) -> Answer:
        read_timeout = self.settings.webhook_read_timeout
        sock, failures = None, []
        for address in addresses:  # every one was checked; the name is not resolved again
            left = connect_by - time.monotonic()
            if left <= 0:
                failures.append(f"{address}: no time left to connect")
                break
            try:
                sock = socket.create_connection((str(address), target.port), timeout=left)
                break
            except OSError as exc:
                failures.append(f"{address}: {exc}")
        if sock is None:
            return Answer(error=("could not connect: " + "; ".join(failures))[:_ERROR_CHARS])
        held = [sock]
        # The whole exchange is bounded, not only each read: a receiver dribbling bytes is cut off.
        watchdog = threading.Timer(read_timeout, _shut, (held,))
        watchdog.start()
        try:
            sock.settimeout(read_timeout)
            if target.scheme == "https":
                held[0] = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
            connection = http.client.HTTPConnection(target.host, target.port, timeout=read_timeout)
            connection.sock = held[0]  # already connected: http.client must not resolve the name again
            connection.request(
                "POST", target.target, body=payload, headers={**headers, "Host": target.host_header}
            )
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
            return Answer(status_code=answer.status, retry_after=_seconds(answer.getheader("Retry-After")))
        except (OSError, http.client.HTTPException):
            if watchdog.finished.is_set():  # not cancelled yet, so it fired: the exchange took too long
                raise TimeoutError from None
            raise
        finally:
            watchdog.cancel()
            held[0].close()


def _shut(held: list[socket.socket]) -> None:
    with contextlib.suppress(OSError):
        held[0].shutdown(socket.SHUT_RDWR)


def _seconds(value: str | None) -> float | None:
    """A Retry-After in seconds (the date form is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
