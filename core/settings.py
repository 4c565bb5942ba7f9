"""Every setting of the service, declared once: environment name, type, default, one line of doc.

Each field of :class:`Settings` is declared with :func:`setting`; :meth:`Settings.from_env`
reads and validates them all from the environment, and :func:`markdown_table` renders the
same declarations as the settings table of the manual, docs/settings.md (a test checks that
the page holds exactly that table; ``python -m core.settings`` prints it). Entry points call
``Settings.from_env()`` once; library code receives the object.

A few settings are read by other programs (gunicorn reads WEB_CONCURRENCY, honcho's shell
expands PORT and HOST in the Procfile): they are declared here all the same, so the manual
lists every knob in one table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from core.setting_values import parse_value, setting


@dataclass(frozen=True)
class Settings:
    """Configuration of the web app, the runners and ``make run``."""

    # -- database ------------------------------------------------------------
    database_url: str = setting(
        "DATABASE_URL",
        "",
        "libpq URL of the database, for the web app and the runners",
        shown="(embedded PostgreSQL under `make run`)",
    )
    read_database_url: str = setting(
        "READ_DATABASE_URL",
        "",
        "libpq URL of a streaming replica of that database: result pages and exports of a finished "
        "batch read from it once it has replayed the batch's end, else from `DATABASE_URL` "
        "(webapp.replica)",
        shown="(none: every read from `DATABASE_URL`)",
    )
    migrate_on_start: bool = setting(
        "MIGRATE_ON_START", True, "apply pending migrations when a web worker or runner starts"
    )
    statement_timeout: float = setting(
        "STATEMENT_TIMEOUT",
        30.0,
        "a web request's SQL statement that runs longer is cancelled (503 problem+json `query-timeout`); "
        "`off` for no bound",
        kind="duration",
        shown="30s",
    )
    bulk_statement_timeout: float = setting(
        "BULK_STATEMENT_TIMEOUT",
        1800.0,
        "the bound instead for uploads and exports, whose one COPY lasts as long as the transfer",
        kind="duration",
        shown="30m",
    )
    idle_in_transaction_timeout: float = setting(
        "IDLE_IN_TRANSACTION_TIMEOUT",
        60.0,
        "PostgreSQL ends a web or runner session left idle inside a transaction this long, "
        "releasing its locks",
        kind="duration",
        shown="60s",
    )
    db_keepalive_seconds: int = setting(
        "DB_KEEPALIVE_SECONDS",
        30,
        "TCP keepalives on web and runner connections, at both ends: a silent connection is probed "
        "after this many seconds, then every 10 s, and dropped after 3 unanswered probes",
    )
    # -- web -----------------------------------------------------------------
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
    chunk_size: int = setting("CHUNK_SIZE", 100, "rows per chunk for new batches")
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
        "at `/login`, and this token is accepted as an admin key (see Clients and keys)",
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
        kind="int",
        shown="(unset: no limit)",
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
        "wrong tokens (login form or `Authorization`) one address may send per `LOGIN_FAILURE_WINDOW`; "
        "then every sign-in from it is a 429 with `Retry-After` until the window ends",
    )
    login_failure_window: float = setting(
        "LOGIN_FAILURE_WINDOW",
        300.0,
        "the window of `LOGIN_MAX_FAILURES`, counted from an address's first failure",
        kind="duration",
        shown="5m",
    )
    prometheus_multiproc_dir: str = setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        "where gunicorn workers share their metric counters",
        shown="(a fresh temp dir per gunicorn start)",
    )
    # -- runners -------------------------------------------------------------
    scorer: str = setting(
        "SCORER",
        "fast",
        "the scorer: `fast` (ours, exactly VADER's numbers in linear time), `reference` (the "
        "vaderSentiment package), or `module:callable` for one of your own (see the API reference, "
        "Sentiment and score)",
    )
    lease_seconds: float = setting(
        "LEASE_SECONDS", 60.0, "how long a runner holds a chunk before another may take it over"
    )
    claim_chunks: int = setting(
        "CLAIM_CHUNKS",
        32,
        "the most chunks of one batch a runner leases, scores and commits in one round (each keeps "
        "its own lease and attempts); a runner sizes its rounds to about 0.5 s of scoring within this",
    )
    poll_seconds: float = setting(
        "POLL_SECONDS", 5.0, "idle runners look for work this often even without a NOTIFY"
    )
    release_expired_seconds: float = setting(
        "RELEASE_EXPIRED_SECONDS", 5.0, "how often a runner puts chunks with expired leases back in the queue"
    )
    max_attempts: int = setting(
        "MAX_ATTEMPTS",
        5,
        "claims of a chunk before the rows that make scoring fail are isolated and recorded as failed",
    )
    retry_backoff_seconds: float = setting(
        "RETRY_BACKOFF_SECONDS",
        1.0,
        "first retry delay after a scoring failure; doubles per attempt, at most 60 s",
    )
    heartbeat_seconds: float = setting(
        "HEARTBEAT_SECONDS",
        5.0,
        "how often an idle runner refreshes its `runners` row (a busy one does with every round)",
    )
    runner_expiry_seconds: float = setting(
        "RUNNER_EXPIRY_SECONDS", 60.0, "`runners` rows silent this long are removed"
    )
    results_ttl_seconds: float = setting(
        "RESULTS_TTL",
        0.0,
        "how long a finished batch is kept when its upload gave no `expires_after` (`7d`, `12h`, `30m`, "
        "seconds): set on the batch at upload, then purged by the runners",
        kind="duration",
        shown="off",
    )
    max_expires_after_seconds: float = setting(
        "MAX_EXPIRES_AFTER",
        315_360_000.0,
        "the longest `expires_after` an upload may ask for (400 `invalid-expiry` past it); "
        "at most, and with `off`, 3650d",
        kind="duration",
        shown="3650d",
    )
    runner_name: str = setting(
        "RUNNER_NAME", "", "how a runner names itself in `chunks.claimed_by`", shown="`host:pid`"
    )
    runner_metrics_port: int = setting(
        "RUNNER_METRICS_PORT",
        0,
        "a runner serves its Prometheus metrics on this port (`--metrics-port`)",
        minimum=0,
        shown="(off)",
    )
    runner_metrics_host: str = setting(
        "RUNNER_METRICS_HOST",
        "127.0.0.1",
        "the address a runner's metrics port binds (`--metrics-host`); `0.0.0.0` to serve beyond this "
        "machine",
    )
    # -- webhooks (core/webhooks.py, jobrunner/webhooks.py) ---------------------
    webhook_secret: str = setting(
        "WEBHOOK_SECRET",
        "",
        "signs the completion webhooks of batches whose API key has no secret of its own (`whsec_` and "
        "base64 of 24 to 64 random bytes); unset, their webhooks cannot be sent (a batch without a key "
        "may then not ask for one). Several, space-separated, each sign (a rotation: `whsec_new whsec_old` "
        "until receivers have switched, then `whsec_new`)",
        shown="(unset)",
    )
    webhook_secret_overlap: float = setting(
        "WEBHOOK_SECRET_OVERLAP",
        86400.0,
        "after `keys webhook-secret` replaces a key's secret, its webhooks are signed with the old one "
        "too for this long, so receivers switch without missing one; `off`: at once",
        kind="duration",
        shown="24h",
    )
    webhook_allow_private: bool = setting(
        "WEBHOOK_ALLOW_PRIVATE",
        False,
        "`true` lets `callback_url` reach loopback, private, link-local and other non-public addresses "
        "(tests, receivers on an internal network); off, they are refused at upload and when sending",
    )
    webhook_connect_timeout: float = setting(
        "WEBHOOK_CONNECT_TIMEOUT", 3.0, "seconds a runner waits to connect to a webhook's receiver"
    )
    webhook_read_timeout: float = setting(
        "WEBHOOK_READ_TIMEOUT",
        10.0,
        "seconds a webhook's request and its answer may take, once connected; past it the attempt failed",
    )
    webhook_concurrency: int = setting(
        "WEBHOOK_CONCURRENCY",
        2,
        "webhooks one runner sends at once, each from a thread and a database connection of its own: a "
        "slow receiver holds up one of them, not the rest",
    )
    webhook_retry_seconds: float = setting(
        "WEBHOOK_RETRY_SECONDS",
        5.0,
        "wait after a webhook's first failed attempt; doubles per attempt (at most an hour, plus up to 20 % "
        "jitter, or the receiver's `Retry-After`)",
    )
    webhook_retry_for: float = setting(
        "WEBHOOK_RETRY_FOR",
        86400.0,
        "webhooks are retried this long after the batch finished, then given up (`failed`)",
        kind="duration",
        shown="24h",
    )
    # -- logging -------------------------------------------------------------
    log_level: str = setting("LOG_LEVEL", "INFO", "logging level of the entry points")
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        "`json` writes one JSON object per line: every request and every runner round with its batch, "
        "duration and rows, and for rounds the claim/score/commit split",
    )
    # -- make run ------------------------------------------------------------
    runners: int = setting("RUNNERS", 2, "runner processes started by `make run`")
    embedded_pg_port: int = setting(
        "EMBEDDED_PG_PORT", 54329, "port of `make run`'s embedded PostgreSQL (127.0.0.1)"
    )
    pg_bindir: str = setting(
        "PG_BINDIR",
        "",
        "PostgreSQL server binaries for the embedded cluster; else those of the `pgserver` wheel, "
        "`pg_config --bindir`, `/usr/lib/postgresql/*/bin`",
        shown="(found)",
    )
    pg_system_user: str = setting(
        "PG_SYSTEM_USER",
        "",
        "when run as root, the unprivileged account the embedded server runs as (created if missing)",
        shown="`postgres` or `sentiment-pg`",
    )

    def __post_init__(self) -> None:
        # Normalised once here, so no reader has to remember the case.
        object.__setattr__(self, "log_level", self.log_level.upper())
        object.__setattr__(self, "log_format", self.log_format.lower())
        # Blank (a template's "${NEW} ${OLD}" with both unset) is unset, not a secret that signs nothing.
        object.__setattr__(self, "webhook_secret", " ".join(self.webhook_secret.split()))
        if self.webhook_secret:  # a bad one stops the process at start, not every webhook later
            from core.webhooks import secret_key

            try:
                for secret in self.webhook_secret.split():
                    secret_key(secret)
            except ValueError as exc:
                raise ValueError(f"WEBHOOK_SECRET: {exc}") from None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read every declared setting from the environment; a bad value is a ValueError naming it."""
        environ = os.environ if environ is None else environ
        values = {}
        for declared in fields(cls):
            raw = environ.get(declared.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[declared.name] = parse_value(
                    declared.metadata["kind"], raw, declared.metadata["minimum"]
                )
            except ValueError as exc:
                raise ValueError(f"{declared.metadata['env']}: {exc}") from exc
        return cls(**values)


def _shown_default(declared: Field[Any]) -> str:
    if declared.metadata["shown"]:
        return declared.metadata["shown"]
    default = declared.default if declared.default is not MISSING else ""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"{default}" if default != "" else "(unset)"


def markdown_table() -> str:
    """The settings table of docs/settings.md, from the declarations."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for declared in fields(Settings):
        meta = declared.metadata
        lines.append(f"| `{meta['env']}` | {_shown_default(declared)} | {meta['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
