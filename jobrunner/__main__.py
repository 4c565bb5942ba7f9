"""Entry point of a runner process: ``python -m jobrunner``.

``python -m jobrunner`` reads the settings from the environment, configures
logging and runs the loop (which first applies pending migrations unless
MIGRATE_ON_START=false) until SIGTERM or SIGINT.

``python -m jobrunner purge --older-than 7d`` deletes, by hand, the finished
batches (completed, completed with errors, or cancelled) that finished longer
ago than that, with all their rows (and the rows of batches deleted earlier),
in bounded steps; RESULTS_TTL makes the runners do it a little at a time.

``python -m jobrunner keys create|list|revoke`` manages API keys
(jobrunner/keys.py).

A runner, and ``purge``, refuse to start (exit 2) when DATABASE_URL's role could not
do their work: one subject to row-level security would see no batch, and one that may
not drop partitions (not the tables' owner, a member of its role or a superuser) would
leave deleted batches' partitions for ever (docs/operations.md, "The runners' role").
"""

from __future__ import annotations

import argparse
import logging
import sys

import psycopg

from core import batches, clients
from core.batches import partitions
from core.connections import conninfo
from core.logs import configure as configure_logging
from core.setting_values import parse_duration
from core.settings import Settings
from jobrunner import keys
from jobrunner.housekeeping import REAPER_LOCK_KEY
from jobrunner.runner import Runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobrunner")
    commands = parser.add_subparsers(dest="command")
    purge = commands.add_parser("purge", help="delete finished batches older than an age")
    purge.add_argument(
        "--older-than", required=True, type=parse_duration, metavar="AGE", help="e.g. 7d, 12h, 30m or seconds"
    )
    keys.add_commands(commands)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this runner's Prometheus metrics on this port (RUNNER_METRICS_PORT)",
    )
    parser.add_argument(
        "--metrics-host",
        default=None,
        help="the address the metrics port binds (RUNNER_METRICS_HOST, default 127.0.0.1)",
    )
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.database_url:
        logging.getLogger("jobrunner").error("DATABASE_URL is not set")
        return 2
    if args.command == "keys":
        return keys.run(args, settings)
    if args.command == "purge":
        with psycopg.connect(conninfo(settings, "runner"), autocommit=True) as conn:
            if refusal := partitions.upkeep_refusal(conn):
                logging.getLogger("jobrunner").error("%s", refusal)
                return 2
            # The runners' reaper lock: one purger at a time, a runner's or this one.
            conn.execute("SELECT pg_advisory_lock(%s)", (REAPER_LOCK_KEY,))
            purged = batches.purge(conn, args.older_than, everything=True)
            # By hand, all of it now, still in bounded steps (runners would do it a little at a time).
            removed = batches.reap(conn, budget_seconds=float("inf"))
        print(f"purged {purged} batch(es), {removed} row(s)")
        return 0
    if refusal := _refusal(settings):
        logging.getLogger("jobrunner").error("%s", refusal)
        return 2
    port = args.metrics_port if args.metrics_port is not None else settings.runner_metrics_port
    if port:
        from jobrunner.metrics import serve

        serve(port, args.metrics_host or settings.runner_metrics_host)
    runner = Runner(settings)
    runner.install_signal_handlers()
    return runner.run()


def _refusal(settings: Settings) -> str | None:
    """Why this runner must not start, when the database answers and says so: a role subject to
    row-level security would see no work, and one that may not drop partitions would leave deleted
    batches' partitions for ever (partitions.upkeep_refusal)."""
    try:
        with psycopg.connect(conninfo(settings, "runner"), autocommit=True, connect_timeout=10) as conn:
            if not clients.sees_every_row(conn):
                return (
                    "DATABASE_URL's role is subject to row-level security on batches, so this runner would "
                    "see no work: run runners as the tables' owner (the role that ran the migrations), a "
                    "superuser, or a role with BYPASSRLS"
                )
            return partitions.upkeep_refusal(conn)
    except psycopg.Error:
        return None  # unreachable now: the runner waits for it, and checks nothing more


if __name__ == "__main__":
    sys.exit(main())
