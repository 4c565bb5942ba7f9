"""Requests to the service, each retried on a 503 and on a lost connection.

One request is at most ATTEMPTS tries. A 503 (the service busy: ``MAX_UPLOADS``,
``MAX_EXPORTS``, its database unreachable, a worker stopping), and the 409
``idempotency-key-in-use`` of an upload whose earlier try is still under way,
are tried again after their ``Retry-After`` (seconds or an HTTP date, at most MAX_WAIT); a
connection refused, reset or timed out, after 1, 2, 4, ... seconds. A body is
given as a function that makes it afresh for each try, so an upload is sent
whole every time (with the same ``Idempotency-Key``, which the caller puts in
its headers). Any other answer of 400 or more is a :class:`ServiceError`
holding what its problem+json says. Standard library only (``http.client``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"
ATTEMPTS = 6
#: The longest wait between two tries, whatever Retry-After says.
MAX_WAIT = 120.0
#: Seconds one connect, send or read may wait for the service.
TIMEOUT = 300.0

Body = Callable[[], Iterable[bytes]]


class ServiceError(Exception):
    """An answer of 400 or more (after the retries, for a 503), or no answer at all."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """The service at ``url`` (default ``SENTIMENT_URL``), with ``key`` (default ``SENTIMENT_KEY``)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        attempts: int = ATTEMPTS,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.url = (url or os.environ.get("SENTIMENT_URL") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(None, f"SENTIMENT_URL must be an http:// or https:// URL, not {self.url!r}")
        self._parts = parts
        self.key = key if key is not None else os.environ.get("SENTIMENT_KEY") or None
        self.attempts = max(1, attempts)
        self.say = say or (lambda message: print(f"sentiment: {message}", file=sys.stderr, flush=True))

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return kind(self._parts.hostname, self._parts.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        on_retry: Callable[[], None] | None = None,
        timeout: float = TIMEOUT,
    ) -> http.client.HTTPResponse:
        """The answer (status below 400), still to be read; the caller closes it. ``timeout``
        bounds the connect and each send or read."""
        target = self._parts.path + path + (f"?{urlencode(query)}" if query else "")
        sent = {"Accept": "application/json", "User-Agent": "sentiment-cli", **(headers or {})}
        if self.key:
            sent["Authorization"] = f"Bearer {self.key}"
        for attempt in range(1, self.attempts + 1):
            if attempt > 1 and on_retry is not None:
                on_retry()
            connection = self._connection(timeout)
            try:
                answer = _exchange(connection, method, target, body, sent)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if attempt == self.attempts:
                    raise ServiceError(None, f"no answer from {self.url}: {_reason(exc)}") from exc
                wait = min(2.0 ** (attempt - 1), MAX_WAIT)
                self.say(
                    f"no answer from {self.url} ({_reason(exc)}); retrying in {wait:g} s "
                    f"(try {attempt + 1} of {self.attempts})"
                )
                time.sleep(wait)
                continue
            if answer.status < 400:
                return answer
            text = answer.read(64 * 1024)
            connection.close()
            problem, kind = _problem(answer.status, answer.reason, text)
            if not _retried(answer.status, kind) or attempt == self.attempts:
                raise ServiceError(answer.status, problem)
            wait = _retry_after(answer.headers.get("Retry-After"), default=2.0 ** (attempt - 1))
            self.say(f"{problem}; retrying in {wait:g} s (try {attempt + 1} of {self.attempts})")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON body."""
        answer = self.request(method, path, **kwargs)
        try:
            return json.loads(answer.read())
        finally:
            answer.close()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    body: Body | None,
    headers: dict[str, str],
) -> http.client.HTTPResponse:
    """Send the request and read the answer's head. A service that refuses a body answers before
    reading it all and closes: the send then fails, but its answer is there to read."""
    try:
        connection.request(method, target, body=None if body is None else body(), headers=headers)
    except (BrokenPipeError, ConnectionResetError) as exc:
        try:
            return connection.getresponse()
        except (OSError, http.client.HTTPException):
            raise exc from None
    return connection.getresponse()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _problem(status: int, reason: str, text: bytes) -> tuple[str, str]:
    """``<status> <title>: <detail>`` from a problem+json body (else the status and the body's
    start), and the problem's type."""
    try:
        body = json.loads(text)
        return f"{status} {body['title']}: {body['detail']}", str(body.get("type", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{status} {reason}: {text[:300].decode('utf-8', 'replace').strip()}".rstrip(": "), ""


def _retried(status: int, kind: str) -> bool:
    """A 503, or the 409 of an upload whose Idempotency-Key an earlier try still holds: that try
    is still being read or committed, and this one will be answered with its batch."""
    return status == 503 or (status == 409 and kind.endswith("/idempotency-key-in-use"))


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait: Retry-After as seconds or as an HTTP date, else ``default``; at most MAX_WAIT."""
    wait = default
    if value:
        value = value.strip()
        if value.isdigit():
            wait = float(value)
        else:
            with contextlib.suppress(TypeError, ValueError):
                wait = parsedate_to_datetime(value).timestamp() - time.time()
    return min(max(wait, 0.0), MAX_WAIT)
