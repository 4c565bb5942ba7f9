"""The runners' settings: scoring, leases and rounds, housekeeping, and the completion webhooks they send.

Two sections of :class:`core.settings.Settings`, declared with :func:`core.setting_values.setting`;
the order of the fields is the order of the settings table in docs/settings.md. The webhook
section checks its signing secrets when the settings are made.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.setting_values import setting


@dataclass(frozen=True)
class RunnerSettings:
    """What the runner loop and its housekeeping read."""

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
    stuck_chunk_seconds: float = setting(
        "STUCK_CHUNK_SECONDS",
        600.0,
        "how long a runner may score one chunk (counted from when its scorer took the chunk up) "
        "before it stops renewing its lease: a scorer stuck that long loses the chunk like a dead "
        "runner",
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
    results_ttl_seconds: float | None = setting(
        "RESULTS_TTL",
        None,
        "how long a finished batch is kept when its upload gave no `expires_after` (`7d`, `12h`, `30m`, "
        "seconds, `off`): set on the batch at upload, then purged by the runners. Unset, it is 30 days "
        "for uploads made once the service has an API key or `API_TOKEN`, and off for the local user "
        "of a service without any",
        kind="duration",
        shown="30d once keys exist",
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


@dataclass(frozen=True)
class WebhookSettings:
    """Completion webhooks: signed and sent by the runners (jobrunner/webhooks.py), asked for at upload."""

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
        "WEBHOOK_CONNECT_TIMEOUT",
        3.0,
        "seconds a runner waits to look up a webhook receiver's name and connect to it, both together; "
        "the upload's check of a `callback_url` waits as long for the lookup",
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
    webhook_max_pending: int = setting(
        "WEBHOOK_MAX_PENDING",
        1000,
        "webhooks one API key may have waiting: its processing batches with a `callback_url` and "
        "its webhooks not yet delivered or given up; an upload with a `callback_url` past it is a 429 "
        "`too-many-pending-webhooks` with `Retry-After`, and nothing is stored",
    )
    webhook_retry_for: float = setting(
        "WEBHOOK_RETRY_FOR",
        86400.0,
        "webhooks are retried this long after the batch finished, then given up (`failed`)",
        kind="duration",
        shown="24h",
    )

    def __post_init__(self) -> None:
        # Blank (a template's "${NEW} ${OLD}" with both unset) is unset, not a secret that signs nothing.
        object.__setattr__(self, "webhook_secret", " ".join(self.webhook_secret.split()))
        if self.webhook_secret:  # a bad one stops the process at start, not every webhook later
            from core.webhooks import secret_key

            try:
                for secret in self.webhook_secret.split():
                    secret_key(secret)
            except ValueError as exc:
                raise ValueError(f"WEBHOOK_SECRET: {exc}") from None
