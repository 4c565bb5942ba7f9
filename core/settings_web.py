"""The web process's settings: gunicorn, its workers and threads, client limits, uploads, keys and sign-in.

One section of :class:`core.settings.Settings`, declared with :func:`core.setting_values.setting`;
the order of the fields is the order of the settings table in docs/settings.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.setting_values import parse_networks, setting

#: The fewest characters API_TOKEN may have: anyone who can reach the port may guess at it.
API_TOKEN_MIN_CHARS = 32

#: A follower receives each chunk's rows as one JSON text written by PostgreSQL, whose values end
#: at 1 GB; CHUNK_SIZE rows at their longest must fit. A row's kept columns at their longest are
#: 50 names of 255 characters and values of 2,000 (webapp/upload/csv_records.py), a failed row's
#: error 2,000 characters (jobrunner/chunk_scoring.py); JSON writes a character in at most 6 bytes
#: (``\u001b``); the row's other members take under 300 (a download's line has five numbers of up
#: to 24 characters, ``-2.2250738585072014e-308``).
CHUNK_JSON_LIMIT = 1024**3 - 1
KEPT_COLUMNS_JSON_CHARS = 50 * 6 * (255 + 2_000 + 6)
ERROR_JSON_CHARS = 6 * 2_000 + 20
ROW_JSON_OTHER_CHARS = 300


def longest_row_json(max_text_chars: int, max_id_chars: int) -> int:
    """The most bytes one row's JSON can take, scored or failed, for these caps."""
    caps = 6 * (max_text_chars + max_id_chars)
    return caps + KEPT_COLUMNS_JSON_CHARS + ERROR_JSON_CHARS + ROW_JSON_OTHER_CHARS


@dataclass(frozen=True)
class WebSettings:
    """What gunicorn and the web app read."""

    host: str = setting(
        "HOST",
        "127.0.0.1",
        "where gunicorn listens (Procfile, `make run`); `0.0.0.0` to listen beyond this machine "
        "(docker compose sets it)",
    )
    port: int = setting("PORT", 8000, "gunicorn's port (expanded by the Procfile's shell)")
    web_concurrency: int = setting(
        "WEB_CONCURRENCY", 1, "gunicorn worker processes (read by gunicorn itself)"
    )
    web_threads: int = setting(
        "WEB_THREADS",
        8,
        "threads per gunicorn worker; a request takes one only once its head and the start of its body "
        "have arrived",
    )
    web_timeout: int = setting(
        "WEB_TIMEOUT",
        300,
        "seconds a gunicorn worker process may go without a heartbeat before it is restarted",
    )
    client_timeout: float = setting(
        "CLIENT_TIMEOUT",
        30.0,
        "seconds a client may stay silent while it sends a request, and that one write of an answer to it "
        "may take; past it, 408 problem+json or a closed connection, and an upload rolls back",
    )
    min_upload_rate: int = setting(
        "MIN_UPLOAD_RATE",
        1024,
        "bytes per second a request must average over the time the server waits for it, once "
        "`CLIENT_TIMEOUT` seconds have passed (408 below it)",
    )
    max_uploads: int = setting(
        "MAX_UPLOADS",
        2,
        "uploads one web worker reads at once; another gets 503 problem+json with `Retry-After`",
    )
    max_exports: int = setting(
        "MAX_EXPORTS",
        2,
        "`results.csv`/`results.ndjson` downloads one web worker streams at once; another gets 503 "
        "problem+json with `Retry-After`",
    )
    max_streams: int = setting(
        "MAX_STREAMS",
        200,
        "open `events` and `results.ndjson?follow=true` streams one web worker serves at once; another "
        "gets 503 problem+json with `Retry-After` (an open stream holds a socket, not a thread)",
    )
    stream_max_seconds: float = setting(
        "STREAM_MAX_SECONDS",
        300.0,
        "how long one stream stays open; the client then resumes it with `Last-Event-ID`",
    )
    follow_poll_seconds: float = setting(
        "FOLLOW_POLL_SECONDS",
        0.25,
        "how often a web worker with open streams reads, in one query for all of them, whether their "
        "batches have new rows",
    )
    stream_nice: int = setting(
        "STREAM_NICE",
        10,
        "how many nice steps (Linux, up to 19) below its request threads a web worker's stream thread "
        "runs: followers get the CPU that runners in the same cgroup and session leave (not across "
        "containers), and on a busy machine the worker's requests wait longer for the GIL it holds; "
        "0 for the same priority (docs/design.md)",
        minimum=0,
    )
    db_pool_size: int = setting("DB_POOL_SIZE", 6, "database connections per web worker")
    db_pool_timeout: float = setting(
        "DB_POOL_TIMEOUT", 5.0, "seconds a request waits for a database connection before answering 503"
    )
    max_upload_bytes: int = setting(
        "MAX_UPLOAD_BYTES", 1024**3, "largest upload body (413 beyond, detected while streaming)"
    )
    max_rows: int = setting("MAX_ROWS", 10_000_000, "most data rows in one upload (413 beyond)")
    max_text_chars: int = setting(
        "MAX_TEXT_CHARS", 20_000, "longer texts are set aside as invalid rows (`text_too_long`)"
    )
    max_id_chars: int = setting(
        "MAX_ID_CHARS", 1_000, "longer ids are set aside as invalid rows (`id_too_long`): pages stay small"
    )
    upload_csv_parser: str = setting(
        "UPLOAD_CSV_PARSER",
        "",
        "the parser of UTF-8 uploads: `c` (`webapp/upload/_fastcsv.c`) or `python` (the same rows, "
        "slower); a web process asked for `c` where it is not built refuses to start",
        shown="(unset: `c` where it is built, else `python`)",
    )
    chunk_size: int = setting(
        "CHUNK_SIZE",
        100,
        "rows per chunk for new batches; a chunk's rows at their longest (MAX_TEXT_CHARS, "
        "MAX_ID_CHARS) must fit one PostgreSQL value of 1 GB as JSON, checked at start",
    )
    secret_key: str = setting(
        "SECRET_KEY",
        "",
        "signs cursors; when unset every web process uses the random key the first migration "
        "stored in `service_secrets`",
        shown="(a key stored in the database)",
    )
    api_token: str = setting(
        "API_TOKEN",
        "",
        "an admin credential for deployments that predate API keys: when set, every endpoint but "
        "`/healthz`, `/readyz` and `/login` needs a key (`Authorization: Bearer`) or a browser signed in "
        "at `/login`, and this token is accepted as an admin key (see Clients and keys); at least 32 "
        "characters, or no process starts",
        shown="(unset)",
    )
    idempotency_ttl_seconds: float = setting(
        "IDEMPOTENCY_TTL",
        86400.0,
        "how long an upload's `Idempotency-Key` answers with the batch it made (`24h`, `7d`, seconds)",
        kind="duration",
        shown="24h",
    )
    quota_queued_rows: int | None = setting(
        "QUOTA_QUEUED_ROWS",
        None,
        "rows one API key may have waiting or being scored at once; an upload that would pass it is a "
        "429 with `Retry-After` and nothing is stored",
        kind="limit",
        shown="(unset or `off`: no limit)",
    )
    quota_batches: int | None = setting(
        "QUOTA_BATCHES",
        1000,
        "batches one API key may have processing at once; another upload is a 429 with `Retry-After` "
        "and nothing is stored (`off`: no limit)",
        kind="limit",
    )
    quota_stored_rows: int | None = setting(
        "QUOTA_STORED_ROWS",
        None,
        "rows one API key may keep in its batches, finished ones and set-aside rows included, until they "
        "are deleted or expire; an upload that would pass it is a 429 and nothing is stored",
        kind="limit",
        shown="(unset or `off`: no limit)",
    )
    session_lifetime: float = setting(
        "SESSION_LIFETIME",
        7 * 86400.0,
        "how long a browser stays signed in after `/login` (`7d`, `12h`, seconds)",
        kind="duration",
        shown="7d",
    )
    login_max_failures: int = setting(
        "LOGIN_MAX_FAILURES",
        5,
        "wrong credentials of one family (guesses at `API_TOKEN`, or made-up client keys; login form or "
        "`Authorization`) one address (an IPv6 client's /64) may send per `LOGIN_FAILURE_WINDOW`; then "
        "that family's sign-ins from it are a 429 with `Retry-After` until the window ends (a valid "
        "client key always gets in)",
    )
    login_failure_window: float = setting(
        "LOGIN_FAILURE_WINDOW",
        300.0,
        "the window of `LOGIN_MAX_FAILURES`, counted from an address's first failure",
        kind="duration",
        shown="5m",
    )
    sessions_per_key: int = setting(
        "SESSIONS_PER_KEY",
        10,
        "browsers signed in with one key (or `API_TOKEN`) at once; a sign-in past it ends that key's "
        "oldest session",
    )
    forwarded_allow_ips: str = setting(
        "FORWARDED_ALLOW_IPS",
        "",
        "the proxies (addresses or networks, comma-separated; `*` for any) whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` are believed: the client's address and whether it used HTTPS (gunicorn "
        "reads it too)",
        shown="(unset: none)",
    )
    prometheus_multiproc_dir: str = setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        "where gunicorn workers share their metric counters",
        shown="(a fresh temp dir per gunicorn start)",
    )

    def __post_init__(self) -> None:
        if self.api_token and len(self.api_token) < API_TOKEN_MIN_CHARS:
            raise ValueError(
                f"API_TOKEN: must be at least {API_TOKEN_MIN_CHARS} characters, got {len(self.api_token)}; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        longest_chunk = self.chunk_size * longest_row_json(self.max_text_chars, self.max_id_chars)
        if longest_chunk > CHUNK_JSON_LIMIT:
            raise ValueError(
                f"CHUNK_SIZE, MAX_TEXT_CHARS, MAX_ID_CHARS: a chunk's rows can take {longest_chunk:,} "
                f"bytes of JSON, past PostgreSQL's {CHUNK_JSON_LIMIT:,} for one value; lower one of them "
                f"(with these caps, CHUNK_SIZE at most "
                f"{CHUNK_JSON_LIMIT // longest_row_json(self.max_text_chars, self.max_id_chars):,})"
            )
        if self.upload_csv_parser not in ("", "c", "python"):
            raise ValueError(f"UPLOAD_CSV_PARSER: 'c' or 'python', got {self.upload_csv_parser!r}")
        try:
            parse_networks(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ValueError(f"FORWARDED_ALLOW_IPS: {exc}") from exc
