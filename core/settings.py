"""Every setting of the service, declared once: environment name, type, default, one line of doc.

:class:`Settings` joins the sections: database, logging and ``make run`` here, the web
process's in :mod:`core.settings_web`, the runners' and webhooks' in :mod:`core.settings_runners`.
:meth:`Settings.from_env` reads and validates them all from the environment, and
:func:`markdown_table` renders the same declarations as the settings table of docs/settings.md
(a test checks that the page holds exactly that table; ``python -m core.settings`` prints it).
Entry points call ``Settings.from_env()`` once; library code receives the object.

A few settings are read by other programs (gunicorn reads WEB_CONCURRENCY, honcho's shell
expands PORT and HOST in the Procfile): they are declared all the same, so the manual lists
every knob in one table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from core.setting_values import parse_value, setting
from core.settings_runners import RunnerSettings, WebhookSettings
from core.settings_web import WebSettings


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is, and the bounds on every session the web app and the runners open."""

    database_url: str = setting(
        "DATABASE_URL",
        "",
        "libpq URL of the database, for the web app and the runners; may list a primary and its "
        'standbys with `target_session_attrs=read-write` (docs/operations.md, "Failover")',
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


@dataclass(frozen=True)
class LoggingSettings:
    """How the entry points log."""

    log_level: str = setting("LOG_LEVEL", "INFO", "logging level of the entry points")
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        "`json` writes one JSON object per line: every request and every runner round with its batch, "
        "duration and rows, and for rounds the claim/score/commit split",
    )

    def __post_init__(self) -> None:
        # Normalised once here, so no reader has to remember the case.
        object.__setattr__(self, "log_level", self.log_level.upper())
        object.__setattr__(self, "log_format", self.log_format.lower())


@dataclass(frozen=True)
class MakeRunSettings:
    """What ``make run`` starts: its runners and its embedded PostgreSQL."""

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


# dataclass() collects fields from the last base to the first, so the sections are listed in
# reverse: the fields, and the settings table, run database, web, runners, webhooks, logging, make run.
@dataclass(frozen=True)
class Settings(
    MakeRunSettings, LoggingSettings, WebhookSettings, RunnerSettings, WebSettings, DatabaseSettings
):
    """Configuration of the web app, the runners and ``make run``."""

    def __post_init__(self) -> None:
        # A dataclass's __init__ calls one __post_init__, this one: it runs those of the sections
        # that check or normalise their values.
        LoggingSettings.__post_init__(self)
        WebSettings.__post_init__(self)
        WebhookSettings.__post_init__(self)

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
