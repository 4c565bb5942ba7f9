"""PostgreSQL enforces ownership too: through the web's own connection setup, a query with
no owner filter in its WHERE returns only the caller's rows, even though DATABASE_URL here names a
superuser; an admin's transaction sees everything, a bare connection sees no batch at all."""

from __future__ import annotations

import pytest

from core import clients
from core.clients import Caller
from core.queries import q
from tests.helpers import make_csv
from tests.integration.helpers import score_everything

TABLES = ("batches", "batch_inputs", "batch_results", "batch_row_errors", "batch_result_keys")
COUNTS = " UNION ALL ".join(f"SELECT '{t}', count(DISTINCT batch_id) FROM {t}" for t in TABLES[1:])


@pytest.fixture
def two_clients(app, upload, db):
    """alice has a scored batch (its sort keys written) and a waiting one, bob one waiting batch; each
    has a set-aside row."""
    keys = {name: clients.create_key(db, name) for name in ("alice", "bob")}

    def batch_of(name: str) -> str:
        return upload(make_csv(["nice", "awful", ""]), key=keys[name])["batch_id"]

    scored = batch_of("alice")
    score_everything(db)
    internal = db.execute("SELECT id FROM batches WHERE public_id = %s", (scored,)).fetchone()[0]
    assert db.execute(q("batch_result_keys_write"), {"batch_id": internal, "step": 10**9}).fetchone()[0]
    return {"alice": {scored, batch_of("alice")}, "bob": {batch_of("bob")}}


def _seen(app, caller: Caller | None) -> tuple[str, set[str], dict[str, int]]:
    pool = app.extensions["db_pool"]
    context = pool.caller_connection(caller) if caller else pool.connection()
    with context as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
        # No owner filter anywhere: whatever comes back is what the policies let through.
        ids = {row[0] for row in conn.execute("SELECT public_id FROM batches")}
        counts = dict(conn.execute(COUNTS).fetchall())
    return user, ids, counts


def test_a_query_without_an_owner_filter_returns_only_the_callers_rows(app, db, two_clients):
    assert db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)

    user, ids, counts = _seen(app, Caller("alice", "alice", admin=False))
    assert user == "sentiment_web"
    assert ids == two_clients["alice"]
    # Both of alice's batches have their inputs; the scored one has results and sort keys too.
    assert counts == {"batch_inputs": 2, "batch_results": 1, "batch_row_errors": 2, "batch_result_keys": 1}

    user, ids, counts = _seen(app, Caller("bob", "bob", admin=False))
    assert ids == two_clients["bob"]
    assert counts == {"batch_inputs": 1, "batch_results": 0, "batch_row_errors": 1, "batch_result_keys": 0}

    user, ids, counts = _seen(app, Caller("root", "root", admin=True))
    assert user == "sentiment_web_admin"
    assert ids == two_clients["alice"] | two_clients["bob"]
    assert counts == {"batch_inputs": 3, "batch_results": 1, "batch_row_errors": 3, "batch_result_keys": 1}

    # A connection no caller was set on (sign-in, health checks) sees no batch at all.
    user, ids, counts = _seen(app, None)
    assert user == "sentiment_web" and ids == set()
    assert counts == {"batch_inputs": 0, "batch_results": 0, "batch_row_errors": 0, "batch_result_keys": 0}


def test_the_caller_does_not_outlive_its_transaction(app, two_clients):
    pool = app.extensions["db_pool"]
    with pool.caller_connection(Caller("alice", "alice", admin=False)) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (2,)
        conn.commit()
        # Past the commit the SET LOCALs are gone: back to the login's default role, no client.
        assert conn.execute("SELECT current_user, count(*) FROM batches").fetchone() == ("sentiment_web", 0)


def test_a_client_cannot_write_a_batch_for_another(app, two_clients):
    import psycopg

    pool = app.extensions["db_pool"]
    with pool.caller_connection(Caller("alice", "alice", admin=False)) as conn:
        bobs = next(iter(two_clients["bob"]))
        changed = conn.execute(
            "UPDATE batches SET status = 'cancelled', completed_at = now() WHERE public_id = %s", (bobs,)
        )
        assert changed.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # new row violates row-level security
            conn.execute(
                "INSERT INTO batches (public_id, chunk_size, client) VALUES (%s, 100, 'bob')",
                ("batch-" + "1" * 32,),
            )


# -- the roles: checked, not trusted; the migration says what a superuser must do -------------------


@pytest.fixture
def superuser(pg_cluster, template_db):  # type: ignore[no-untyped-def]
    """The cluster's superuser (the template database is migrated first, so the roles exist)."""
    import psycopg

    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def owner(superuser, pg_cluster):  # type: ignore[no-untyped-def]
    """A database owned by a login that is no superuser and has no CREATEROLE: (url, login)."""
    import uuid

    user, dbname = f"own_{uuid.uuid4().hex[:8]}", f"owned_{uuid.uuid4().hex[:8]}"
    superuser.execute(f"CREATE ROLE {user} LOGIN")
    superuser.execute(f"CREATE DATABASE {dbname} OWNER {user}")
    yield pg_cluster.url(dbname).replace("postgresql://postgres@", f"postgresql://{user}@", 1), user
    superuser.execute(f"DROP DATABASE {dbname} WITH (FORCE)")
    superuser.execute(f"DROP OWNED BY {user} CASCADE")
    superuser.execute(f"REVOKE sentiment_web, sentiment_web_admin FROM {user}")
    superuser.execute(f"DROP ROLE {user}")


def test_a_migration_without_the_right_to_grant_the_roles_says_what_to_run(superuser, owner):
    from core.migrations import migrate

    url, user = owner
    with pytest.raises(Exception, match="cannot grant the role sentiment_web"):
        migrate(url)
    # What the hint says a superuser runs; then the owner migrates.
    superuser.execute(f"GRANT sentiment_web, sentiment_web_admin TO {user}")
    migrate(url)


def test_a_web_role_that_could_bypass_row_security_is_refused(superuser, owner):
    from core.migrations import migrate

    superuser.execute("ALTER ROLE sentiment_web_admin BYPASSRLS")
    try:
        superuser.execute(f"GRANT sentiment_web, sentiment_web_admin TO {owner[1]}")
        with pytest.raises(Exception, match="exists with LOGIN, SUPERUSER or BYPASSRLS"):
            migrate(owner[0])
    finally:
        superuser.execute("ALTER ROLE sentiment_web_admin NOBYPASSRLS")


def test_a_runner_whose_role_is_subject_to_row_security_refuses_to_start(superuser, owner, tmp_path):
    import os
    import subprocess
    import sys

    from core.migrations import migrate
    from tests.integration.conftest import REPO

    url, user = owner
    superuser.execute(f"GRANT sentiment_web, sentiment_web_admin TO {user}")
    migrate(url)
    superuser.execute("DROP ROLE IF EXISTS plain_runner")
    superuser.execute("CREATE ROLE plain_runner LOGIN")
    try:
        with __import__("psycopg").connect(url, autocommit=True) as conn:
            conn.execute(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO plain_runner"
            )
        env = dict(
            os.environ,
            DATABASE_URL=url.replace(f"postgresql://{user}@", "postgresql://plain_runner@", 1),
            MIGRATE_ON_START="false",
            PYTHONPATH=str(REPO),
        )
        ran = subprocess.run(
            [sys.executable, "-m", "jobrunner"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 2
        assert "subject to row-level security" in ran.stdout + ran.stderr
    finally:
        with __import__("psycopg").connect(url, autocommit=True) as conn:
            conn.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM plain_runner")
        superuser.execute("DROP ROLE plain_runner")


def _runner(url: str, login: str, owner: str, *args: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    """``python -m jobrunner`` as ``login`` in the database ``url`` (owned by ``owner``)."""
    import os
    import subprocess
    import sys

    from tests.integration.conftest import REPO

    env = dict(
        os.environ,
        DATABASE_URL=url.replace(f"postgresql://{owner}@", f"postgresql://{login}@", 1),
        MIGRATE_ON_START="false",
        PYTHONPATH=str(REPO),
        RELEASE_EXPIRED_SECONDS="0.5",
        POLL_SECONDS="0.5",
    )
    command = [sys.executable, "-m", "jobrunner", *args]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_runner_that_may_not_drop_partitions_refuses_to_start_and_a_member_of_the_owner_keeps_them(
    superuser, owner
):
    import signal

    import psycopg

    from core.migrations import migrate
    from tests.helpers import make_csv, wait_for
    from tests.integration.helpers import upload_into

    url, user = owner
    superuser.execute(f"GRANT sentiment_web, sentiment_web_admin TO {user}")
    migrate(url)
    superuser.execute("DROP ROLE IF EXISTS bypass_runner")
    superuser.execute("DROP ROLE IF EXISTS member_runner")
    # Sees every row, may read and write every table, owns none: scoring it could do, dropping not.
    superuser.execute("CREATE ROLE bypass_runner LOGIN BYPASSRLS")
    superuser.execute(f"CREATE ROLE member_runner LOGIN IN ROLE {user}")  # the owner's privileges
    member = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bypass_runner"
            )
            conn.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bypass_runner")
        for args in ((), ("purge", "--older-than", "0")):
            refused = _runner(url, "bypass_runner", user, *args)
            try:
                output = refused.communicate(timeout=60)[0]
            finally:
                if refused.poll() is None:  # it started instead: stopped, and the test fails below
                    refused.kill()
                    output = refused.communicate()[0]
            assert refused.returncode == 2, output
            assert "bypass_runner may not make or drop the partitions" in output
            assert f"GRANT {user} TO bypass_runner;" in output

        # A login granted the owner's role makes partitions ahead and drops a deleted range whole.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT setval('batches_id_seq', 29)")
            upload_into(url, make_csv(["nice", "awful"]))  # batch 30 ...
            conn.execute("UPDATE batches SET deleted_at = now()")  # ... deleted: range 30 closes at 40
            conn.execute("SELECT setval('batches_id_seq', 40)")
            member = _runner(url, "member_runner", user)
            gone = "SELECT count(*) = 0 FROM batch_partitions WHERE partition = 'batch_results_p30'"
            wait_for(lambda: conn.execute(gone).fetchone()[0], timeout=60)
            made = "SELECT count(*) = 1 FROM batch_partitions WHERE partition = 'batch_results_p50'"
            wait_for(lambda: conn.execute(made).fetchone()[0], timeout=60)  # ahead of ids 41 and 51
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'batch_results_p%'"
            ).fetchall()
            assert owners == [(user,)]
    finally:
        if member is not None:
            member.send_signal(signal.SIGTERM)
            member.communicate(timeout=30)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bypass_runner")
            conn.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM bypass_runner")
        superuser.execute("DROP ROLE bypass_runner")
        superuser.execute("DROP ROLE member_runner")


def test_a_follower_reads_as_its_caller_what_the_owner_reads_and_another_key_nothing(app, upload, db):
    """A stream's read of committed chunks, under the policies of every table it joins: the key's
    own batch reads whole, as the owner's policy-free connection reads it; another key reads no
    chunk of it."""
    from core import batches
    from core.batches.feed import Position, rows_after

    keys = {name: clients.create_key(db, name) for name in ("alice", "bob")}
    texts = ["nice", "awful", 'été \u2028 \x01 "q" \\', "plain"] * 75
    public_id = upload(make_csv(texts, ids=[f"ïd\t{n}" for n in range(300)]), key=keys["alice"])["batch_id"]
    score_everything(db)
    batch = batches.get(db, public_id)
    pool = app.extensions["db_pool"]
    for export in (False, True):
        whole = [(c.position, c.rows, c.json) for c in rows_after(db, batch, Position(), 100, export=export)]
        assert sum(rows for _, rows, _ in whole) == len(texts)
        with pool.caller_connection(Caller("alice", "alice", admin=False)) as conn:
            seen = rows_after(conn, batch, Position(), 100, export=export)
        assert [(c.position, c.rows, c.json) for c in seen] == whole
        with pool.caller_connection(Caller("bob", "bob", admin=False)) as conn:
            assert rows_after(conn, batch, Position(), 100, export=export) == []
