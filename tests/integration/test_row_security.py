"""PostgreSQL enforces ownership too (issue 15): through the web's own connection setup, a query with
no owner filter in its WHERE returns only the caller's rows, even though DATABASE_URL here names a
superuser; an admin's transaction sees everything, a bare connection sees no batch at all."""

from __future__ import annotations

import io

import pytest

from core import clients
from core.clients import Caller
from tests.helpers import make_csv, score_everything

pytestmark = pytest.mark.integration

TABLES = ("batches", "batch_rows", "batch_results", "batch_row_errors")
COUNTS = " UNION ALL ".join(f"SELECT '{t}', count(DISTINCT batch_id) FROM {t}" for t in TABLES[1:])


@pytest.fixture
def two_clients(app, client, db):
    """alice has a scored batch and a waiting one, bob one waiting batch; each has a set-aside row."""
    keys = {name: clients.create_key(db, name) for name in ("alice", "bob")}

    def upload(name: str) -> str:
        data = make_csv(["nice", "awful", ""])
        response = client.post(
            "/batch/upload",
            data={"file": (io.BytesIO(data), "x.csv")},
            content_type="multipart/form-data",
            headers={"Authorization": f"Bearer {keys[name]}"},
        )
        assert response.status_code == 202
        return response.get_json()["batch_id"]

    scored = upload("alice")
    score_everything(db)
    return {"alice": {scored, upload("alice")}, "bob": {upload("bob")}}


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
    # alice's scored batch has results and no staged rows left; the waiting one is staged.
    assert counts == {"batch_rows": 1, "batch_results": 1, "batch_row_errors": 2}

    user, ids, counts = _seen(app, Caller("bob", "bob", admin=False))
    assert ids == two_clients["bob"]
    assert counts == {"batch_rows": 1, "batch_results": 0, "batch_row_errors": 1}

    user, ids, counts = _seen(app, Caller("root", "root", admin=True))
    assert user == "sentiment_web_admin"
    assert ids == two_clients["alice"] | two_clients["bob"]
    assert counts == {"batch_rows": 2, "batch_results": 1, "batch_row_errors": 3}

    # A connection no caller was set on (sign-in, health checks) sees no batch at all.
    user, ids, counts = _seen(app, None)
    assert user == "sentiment_web" and ids == set()
    assert counts == {"batch_rows": 0, "batch_results": 0, "batch_row_errors": 0}


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
