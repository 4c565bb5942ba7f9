"""``python -m jobrunner keys``: make, list and revoke API keys from the command line.

* ``keys create NAME [--admin]`` prints the new key alone on the last line of
  stdout: it is shown this once, and only its hash is stored.
* ``keys list`` shows each key's name, role, when it was made and last used,
  and whether it was revoked; never a key.
* ``keys revoke NAME`` refuses the key from the next request on.
* ``keys webhook-secret NAME`` gives the key a new secret for signing its
  batches' webhooks and prints it alone on the last line, once (``keys
  create`` prints the key's first one, on the line before the key).

They run against DATABASE_URL as the runners do (applying pending migrations
first unless MIGRATE_ON_START=false); keys are never made over HTTP.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

import psycopg

from core import clients, webhooks
from core.connections import conninfo
from core.errors import ServiceError
from core.migrations import migrate
from core.settings import Settings


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keys create|list|revoke`` to the runner's command line."""
    keys = commands.add_parser("keys", help="make, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; it is printed once, on the last line")
    create.add_argument("name", help="the client's name: letters, digits, '.', '_', '-'")
    create.add_argument("--admin", action="store_true", help="an admin key: sees and manages every batch")
    actions.add_parser("list", help="every key: name, role, created, last used, revoked (never the key)")
    revoke = actions.add_parser("revoke", help="refuse a key from the next request on")
    revoke.add_argument("name")
    secret = actions.add_parser(
        "webhook-secret", help="give a key a new webhook signing secret, printed once (the old one stops)"
    )
    secret.add_argument("name")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


def _table(keys: list[clients.ApiKey]) -> str:
    rows = [("NAME", "ROLE", "CREATED", "LAST USED", "REVOKED")]
    rows += [(k.name, k.role, _when(k.created_at), _when(k.last_used_at), _when(k.revoked_at)) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Carry out one ``keys`` command; 0 on success, 1 with the reason on stderr otherwise."""
    if settings.migrate_on_start:
        migrate(settings.database_url)
    with psycopg.connect(conninfo(settings, "runner"), autocommit=True) as conn:
        try:
            if args.action == "create":
                with conn.transaction():
                    key = clients.create_key(conn, args.name, admin=args.admin)
                    secret = webhooks.give_secret(conn, args.name).secret
                role = "admin" if args.admin else "client"
                print(f"Its webhooks are signed with this secret (shown once too): {secret}")
                print(f"API key {args.name!r} ({role}). It is shown this once; keep it somewhere safe:")
                print(key)
            elif args.action == "webhook-secret":
                rotation = webhooks.give_secret(conn, args.name, settings.webhook_secret_overlap)
                if rotation.previous_until is not None:
                    until = f"{rotation.previous_until:%Y-%m-%d %H:%M:%S %Z}"
                    print(f"The old secret signs beside it until {until} (WEBHOOK_SECRET_OVERLAP).")
                print(f"The webhooks of {args.name!r} are signed from now on with (shown this once):")
                print(rotation.secret)
            elif args.action == "list":
                print(_table(clients.list_keys(conn)))
            else:
                clients.revoke_key(conn, args.name)
                print(f"API key {args.name!r} revoked: it is refused from the next request on.")
        except ServiceError as exc:
            print(f"{exc.title}: {exc.detail}", file=sys.stderr)
            return 1
    return 0
