"""Every setting of the service, read from the environment in this one place.

Each field documents its environment variable; the README's settings table
lists the same names. Entry points call :func:`Settings.from_env` once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in '90', '45s', '30m', '12h', '7d' or '2w'."""
    raw = text.strip().lower()
    try:
        value = float(raw[:-1]) * _UNITS[raw[-1]] if raw and raw[-1] in _UNITS else float(raw)
    except ValueError as exc:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 45s, 30m, 12h, 7d)") from exc
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return value


def _env_duration(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() in ("", "off", "0"):
        return default
    return parse_duration(raw)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Configuration shared by the web app and the runners."""

    #: DATABASE_URL: libpq URL or conninfo of the PostgreSQL to use.
    database_url: str = ""
    #: CHUNK_SIZE: rows per chunk for new batches.
    chunk_size: int = 100
    #: LEASE_SECONDS: how long a runner holds a chunk before another may take it over.
    lease_seconds: float = 60.0
    #: CLAIM_CHUNKS: chunks of one batch a runner leases, scores and commits together (each still
    #: its own 100-row chunk with its own lease); fewer claims and commits per row.
    claim_chunks: int = 4
    #: POLL_SECONDS: idle runners look for work this often even without a NOTIFY.
    poll_seconds: float = 5.0
    #: RELEASE_EXPIRED_SECONDS: how often a runner returns expired leases to the queue.
    release_expired_seconds: float = 5.0
    #: MAX_UPLOAD_BYTES: largest accepted upload body (413 beyond, detected while streaming).
    max_upload_bytes: int = 1024**3
    #: MAX_ROWS: most data rows in one upload (413 beyond, detected while streaming).
    max_rows: int = 10_000_000
    #: MAX_TEXT_CHARS: longer texts are set aside as invalid rows (text_too_long).
    max_text_chars: int = 20_000
    #: MAX_ATTEMPTS: claims of a chunk before its failing rows are isolated and recorded as failed.
    max_attempts: int = 5
    #: RETRY_BACKOFF_SECONDS: first retry delay after a scoring failure; doubles per attempt, at most 60 s.
    retry_backoff_seconds: float = 1.0
    #: HEARTBEAT_SECONDS: how often an idle runner refreshes its row in the runners table.
    heartbeat_seconds: float = 5.0
    #: RUNNER_EXPIRY_SECONDS: runners silent this long are removed from the runners table.
    runner_expiry_seconds: float = 60.0
    #: RESULTS_TTL: purge finished batches this long after they finished (e.g. 7d); off by default.
    results_ttl_seconds: float = 0.0
    #: FAULT_POISON_TEXT (tests only): scoring raises for any chunk with a text containing this.
    fault_poison_text: str = ""
    #: FAULT_SCORE_DELAY_SECONDS (tests only): sleep this long before scoring each chunk.
    fault_score_delay_seconds: float = 0.0
    #: SCORER: "fast" (our exact reimplementation) or "reference" (the vaderSentiment package).
    scorer: str = "fast"
    #: RUNNER_NAME: how a runner names itself in chunks.claimed_by (default host:pid).
    runner_name: str = ""
    #: RUNNER_METRICS_PORT: when set, a runner serves its Prometheus metrics on this port.
    runner_metrics_port: int = 0
    #: DB_POOL_SIZE: connections per web worker process.
    db_pool_size: int = 4
    #: DB_POOL_TIMEOUT: seconds a request waits for a database connection before answering 503.
    db_pool_timeout: float = 5.0
    #: MIGRATE_ON_START: apply pending migrations when a web worker or runner starts.
    migrate_on_start: bool = True
    #: SECRET_KEY: signs result cursors; when unset, a key kept in the database is used.
    secret_key: str = ""
    #: API_TOKEN: when set, every endpoint but /healthz and /readyz needs "Authorization: Bearer <token>".
    api_token: str = ""
    #: LOG_FORMAT: "text" (default) or "json" (one JSON object per line).
    log_format: str = "text"
    #: LOG_LEVEL: logging level of the entry points.
    log_level: str = "INFO"

    @classmethod
    def from_env(cls) -> Settings:
        """Read every setting from the environment, validating as it goes."""
        return cls(
            database_url=os.environ.get("DATABASE_URL", ""),
            chunk_size=_env_int("CHUNK_SIZE", 100),
            lease_seconds=_env_float("LEASE_SECONDS", 60.0),
            claim_chunks=_env_int("CLAIM_CHUNKS", 4),
            poll_seconds=_env_float("POLL_SECONDS", 5.0),
            release_expired_seconds=_env_float("RELEASE_EXPIRED_SECONDS", 5.0),
            max_upload_bytes=_env_int("MAX_UPLOAD_BYTES", 1024**3),
            max_rows=_env_int("MAX_ROWS", 10_000_000),
            max_text_chars=_env_int("MAX_TEXT_CHARS", 20_000),
            max_attempts=_env_int("MAX_ATTEMPTS", 5),
            retry_backoff_seconds=_env_float("RETRY_BACKOFF_SECONDS", 1.0),
            heartbeat_seconds=_env_float("HEARTBEAT_SECONDS", 5.0),
            runner_expiry_seconds=_env_float("RUNNER_EXPIRY_SECONDS", 60.0),
            results_ttl_seconds=_env_duration("RESULTS_TTL", 0.0),
            fault_poison_text=os.environ.get("FAULT_POISON_TEXT", ""),
            fault_score_delay_seconds=_env_duration("FAULT_SCORE_DELAY_SECONDS", 0.0),
            scorer=os.environ.get("SCORER", "fast"),
            runner_name=os.environ.get("RUNNER_NAME", ""),
            runner_metrics_port=_env_int("RUNNER_METRICS_PORT", 0, minimum=0),
            db_pool_size=_env_int("DB_POOL_SIZE", 4),
            db_pool_timeout=_env_float("DB_POOL_TIMEOUT", 5.0),
            migrate_on_start=_env_bool("MIGRATE_ON_START", True),
            secret_key=os.environ.get("SECRET_KEY", ""),
            api_token=os.environ.get("API_TOKEN", ""),
            log_format=os.environ.get("LOG_FORMAT", "text").lower(),
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        )
