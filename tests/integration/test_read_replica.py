"""READ_DATABASE_URL: result pages and exports read from a real hot standby (webapp.replica).

The module makes a standby of the session's cluster with ``pg_basebackup`` and
streams to it while its tests run. To tell which server answered, a test
pauses the standby's replay and then changes a result on the primary only
(results never change in the product; here it marks the primary's copy): the
answer shows which copy it was read from.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core import clients
from core.embedded_postgres import EmbeddedPostgres
from tests.helpers import make_csv, process_next, sample_texts, score_everything, wait_for
from tests.integration.conftest import free_port
from webapp import create_app

MARK = "changed on the primary only"


@pytest.fixture(scope="module")
def standby(pg_cluster: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    datadir = Path(tempfile.mkdtemp(prefix="sentiment-standby-"))
    replica = pg_cluster.standby(datadir, free_port())
    replica.start()
    yield replica
    replica.stop("immediate")
    shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def replica_db(standby: EmbeddedPostgres, database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database on the standby (replay resumed after)."""
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    conn = wait_for(lambda: _connect(standby.url(dbname)), timeout=60)
    yield conn
    conn.execute("SELECT pg_wal_replay_resume()")
    conn.close()


def _connect(url: str) -> psycopg.Connection | None:
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError:  # the database is not replayed yet
        return None


def _caught_up(db: psycopg.Connection, replica_db: psycopg.Connection) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    lsn = db.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    query = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
    wait_for(lambda: replica_db.execute(query, (lsn,)).fetchone()[0], timeout=60)


def _paused(replica_db: psycopg.Connection) -> None:
    replica_db.execute("SELECT pg_wal_replay_pause()")
    wait_for(lambda: replica_db.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused")


@pytest.fixture
def make_app(database_url: str) -> Iterator:
    apps = []

    def make(read_database_url: str):  # type: ignore[no-untyped-def]
        app = create_app(
            {"database_url": database_url, "read_database_url": read_database_url, "migrate_on_start": False}
        )
        app.testing = True
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["db_pool"].close()
        if "db_replica" in app.extensions:
            app.extensions["db_replica"].pool.close()


def _upload(client, texts: list[str], headers: dict | None = None) -> str:  # type: ignore[no-untyped-def]
    answer = client.post(
        "/batch/upload", data=make_csv(texts), content_type="text/csv", headers=headers or {}
    )
    assert answer.status_code == 202, answer.json
    return answer.json["batch_id"]


def _texts(client, public_id: str, query: str = "", headers: dict | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    answer = client.get(f"/batch/{public_id}/results?per_page=1000{query}", headers=headers or {})
    assert answer.status_code == 200, answer.json
    return [row["text"] for row in answer.json["results"]]


def _mark_on_primary(db: psycopg.Connection, public_id: str) -> None:
    db.execute(
        "UPDATE batch_results SET text = %s WHERE batch_id = (SELECT id FROM batches WHERE public_id = %s)",
        (MARK, public_id),
    )


def test_pages_and_exports_of_a_finished_batch_read_from_the_replica(
    make_app, db, replica_db, standby, database_url
):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    # As a client key, so the standby's transactions run under row-level security too.
    key = clients.create_key(db, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    texts = sample_texts(250)
    public_id = _upload(client, [*texts, ""], auth)  # the empty text is set aside
    score_everything(db)
    _caught_up(db, replica_db)
    _paused(replica_db)
    _mark_on_primary(db, public_id)

    # Every row, as uploaded: the standby's copy, not the primary's.
    assert _texts(client, public_id, headers=auth) == texts
    positive = _texts(client, public_id, "&sentiment=positive", headers=auth)
    assert positive and MARK not in positive
    ordered = _texts(client, public_id, "&order=-compound", headers=auth)
    assert sorted(ordered) == sorted(texts)
    exported = client.get(f"/batch/{public_id}/results.csv", headers=auth)
    assert [row["text"] for row in csv.DictReader(io.StringIO(exported.text))] == texts
    ndjson = client.get(f"/batch/{public_id}/results.ndjson", headers=auth)
    assert [json.loads(line)["text"] for line in ndjson.text.splitlines()] == texts
    # So are the rows set aside at upload.
    db.execute("UPDATE batch_row_errors SET detail = %s", (MARK,))
    errors = client.get(f"/batch/{public_id}/errors", headers=auth).json["errors"]
    assert errors and all(error["detail"] != MARK for error in errors)
    # The batch itself (status, counts) is the primary's business.
    assert client.get(f"/batch/{public_id}", headers=auth).json["status"] == "completed"


def test_a_batch_the_replica_has_not_replayed_reads_from_the_primary(
    make_app, db, replica_db, standby, database_url
):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    earlier = _upload(client, ["good"] * 150)
    score_everything(db)
    _caught_up(db, replica_db)
    _paused(replica_db)
    # Uploaded and finished while the standby replays nothing: it has never seen this batch.
    texts = sample_texts(150, seed=3)
    unseen = _upload(client, texts)
    score_everything(db)
    assert _texts(client, unseen) == texts
    exported = client.get(f"/batch/{unseen}/results.csv")
    assert [row["text"] for row in csv.DictReader(io.StringIO(exported.text))] == texts
    # A batch deleted on the primary is gone at once, though the standby still holds it.
    assert client.delete(f"/batch/{earlier}").status_code == 204
    for path in ("", "/results", "/results.csv"):
        assert client.get(f"/batch/{earlier}{path}").status_code == 404


def test_a_batch_still_running_on_the_replica_reads_from_the_primary(
    make_app, db, replica_db, standby, database_url
):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    texts = sample_texts(300, seed=5)
    public_id = _upload(client, texts)

    process_next(db)  # one chunk of three: the standby sees it processing
    _caught_up(db, replica_db)
    _paused(replica_db)
    score_everything(db)
    assert _texts(client, public_id) == texts  # all of it, not the standby's first chunk


def test_page_numbers_that_write_checkpoints_use_the_primary(make_app, db, replica_db, standby, database_url):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    public_id = _upload(client, ["good"] * 120 + ["bad"] * 80)
    score_everything(db)
    _caught_up(db, replica_db)
    _paused(replica_db)
    answer = client.get(f"/batch/{public_id}/results?sentiment=positive&per_page=100&page=2")
    assert answer.status_code == 200 and len(answer.json["results"]) == 20
    assert db.execute("SELECT count(*) FROM result_checkpoints").fetchone()[0] > 0


def test_an_unreachable_replica_sends_reads_to_the_primary(make_app, db, tmp_path, caplog):
    client = make_app(f"postgresql://postgres@/nowhere?host={tmp_path}&port=1")
    texts = sample_texts(120, seed=9)
    public_id = _upload(client, texts)
    score_everything(db)
    assert _texts(client, public_id) == texts
    assert "replica unreachable" in caplog.text
    assert client.get(f"/batch/{public_id}/results.ndjson").status_code == 200
