"""``make run``: the whole service on one machine, for development.

Without DATABASE_URL it starts the embedded PostgreSQL whose data lives in
``./var/postgres`` (kept between runs; port EMBEDDED_PG_PORT, default 54329,
on 127.0.0.1). It applies the migrations, then runs the Procfile with honcho:
gunicorn on PORT (default 8000) and RUNNERS runner processes (default 2).
Ctrl-C stops honcho's processes, then the embedded PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate

log = logging.getLogger(__name__)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = dict(os.environ)
    env.setdefault("PORT", "8000")
    # The Procfile names `gunicorn` and `python`: make them this virtualenv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cluster = None
    if not env.get("DATABASE_URL"):
        port = int(env.get("EMBEDDED_PG_PORT", "54329"))
        cluster = EmbeddedPostgres(Path("var/postgres"), port=port, listen_tcp=True)
        cluster.start()
        # Create the application database once; the superuser db stays for admin.
        import psycopg

        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sentiment'").fetchone():
                conn.execute("CREATE DATABASE sentiment")
        env["DATABASE_URL"] = cluster.url("sentiment")
        log.info("embedded PostgreSQL: psql %s", env["DATABASE_URL"])
    migrate(env["DATABASE_URL"])
    env["MIGRATE_ON_START"] = "false"
    runners = env.get("RUNNERS", "2")
    log.info("serving on http://127.0.0.1:%s with %s runner(s)", env["PORT"], runners)
    honcho = [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-c", f"web=1,runner={runners}"]
    try:
        return subprocess.call(honcho, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
            log.info("embedded PostgreSQL stopped")


if __name__ == "__main__":
    sys.exit(main())
