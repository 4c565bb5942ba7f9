"""READ_DATABASE_URL: result pages and exports read from a real hot standby (webapp.replica).

The module makes a standby of the session's cluster with ``pg_basebackup`` and
streams to it while its tests run. To tell which server answered, a test
pauses the standby's replay and then changes the rows' texts on the primary only
(batch_inputs never changes in the product; here it marks the primary's copy):
the answer shows which copy it was read from.
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
from core.batches.queue import claim_chunk
from core.embedded_postgres import EmbeddedPostgres
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import free_port
from tests.integration.helpers import process, process_next, score_everything, upload_file
from webapp import create_app

MARK = "changed on the primary only"
UNREACHABLE = "postgresql://postgres@/nowhere"


def _standby_of(cluster: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    datadir = Path(tempfile.mkdtemp(prefix="sentiment-standby-"))
    replica = cluster.standby(datadir, free_port())
    replica.start()
    yield replica
    replica.stop("immediate")
    shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(scope="module")
def standby(pg_cluster: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    yield from _standby_of(pg_cluster)


@pytest.fixture(scope="module")
def second_standby(pg_cluster: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    yield from _standby_of(pg_cluster)


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
    """Wait until the standby has replayed everything the primary has written so far (the insert
    position: with synchronous_commit off, as the test cluster runs, the last commits may not be
    written out yet)."""
    lsn = db.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    query = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
    wait_for(lambda: replica_db.execute(query, (lsn,)).fetchone()[0], timeout=60)


def _paused(replica_db: psycopg.Connection) -> None:
    replica_db.execute("SELECT pg_wal_replay_pause()")
    wait_for(lambda: replica_db.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused")


@pytest.fixture
def make_app(database_url: str) -> Iterator:
    apps = []

    def make(read_database_url: str, **config: object):  # type: ignore[no-untyped-def]
        app = create_app(
            {
                "database_url": database_url,
                "read_database_url": read_database_url,
                "migrate_on_start": False,
                **config,
            }
        )
        app.testing = True
        apps.append(app)
        if read_database_url and not read_database_url.startswith(UNREACHABLE):
            # The replica pool's first connection: on a busy machine it may take longer than the
            # 2 s a request waits for one, and the reads would go to the primary.
            app.extensions["db_replica"].pool.wait(timeout=60)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["db_pool"].close()
        if "db_replica" in app.extensions:
            app.extensions["db_replica"].pool.close()


def _texts(client, public_id: str, query: str = "", headers: dict | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    answer = client.get(f"/batch/{public_id}/results?per_page=1000{query}", headers=headers or {})
    assert answer.status_code == 200, answer.json
    return [row["text"] for row in answer.json["results"]]


def _mark_on_primary(db: psycopg.Connection, public_id: str) -> None:
    db.execute(
        "UPDATE batch_inputs SET text = %s WHERE batch_id = (SELECT id FROM batches WHERE public_id = %s)",
        (MARK, public_id),
    )


def test_pages_and_exports_of_a_finished_batch_read_from_the_replica(
    make_app, db, replica_db, standby, database_url, caplog
):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    # As a client key, so the standby's transactions run under row-level security too.
    key = clients.create_key(db, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    texts = sample_texts(250)
    public_id = upload_file(client, make_csv([*texts, ""]), key=key)["batch_id"]  # "" is set aside
    score_everything(db)
    _caught_up(db, replica_db)
    # The first filtered or score-ordered list of a batch writes its sort keys (batch_result_keys):
    # on the primary, though the replica shows the batch finished; the replica then replays them.
    for query in ("&sentiment=positive", "&order=-compound"):
        assert _texts(client, public_id, query, headers=auth)
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
    exported.close()  # its export slot is the key's one (MAX_EXPORTS 2, half a key's) until closed
    ndjson = client.get(f"/batch/{public_id}/results.ndjson", headers=auth)
    assert [json.loads(line)["text"] for line in ndjson.text.splitlines()] == texts
    # The events of a finished batch replay from where its pages read.
    events = client.get(f"/batch/{public_id}/events", headers=auth).get_data(as_text=True).splitlines()
    rows = [json.loads(line[len("data: ") :])["rows"] for line in events if line.startswith('data: {"rows"')]
    assert sorted(row["text"] for chunk in rows for row in chunk) == sorted(texts)
    # And the browser's page of the batch, whose first page of results is one of them.
    page = client.get(f"/batch/{public_id}", headers={**auth, "Accept": "text/html"}).get_data(as_text=True)
    plain = next(text for text in texts[:10] if not set(text) & set("\"&<>'\n"))
    assert plain in page and MARK not in page
    # So are the rows set aside at upload.
    db.execute("UPDATE batch_row_errors SET detail = %s", (MARK,))
    errors = client.get(f"/batch/{public_id}/errors", headers=auth).json["errors"]
    assert errors and all(error["detail"] != MARK for error in errors)
    # The batch itself (status, counts) is the primary's business.
    assert client.get(f"/batch/{public_id}", headers=auth).json["status"] == "completed"
    assert "replica failed" not in caplog.text  # nothing above took the replica for down


def test_a_batch_the_replica_has_not_replayed_reads_from_the_primary(
    make_app, db, replica_db, standby, database_url
):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    earlier = upload_file(client, make_csv(["good"] * 150))["batch_id"]
    score_everything(db)
    _caught_up(db, replica_db)
    _paused(replica_db)
    # Uploaded and finished while the standby replays nothing: it has never seen this batch.
    texts = sample_texts(150, seed=3)
    unseen = upload_file(client, make_csv(texts))["batch_id"]
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
    public_id = upload_file(client, make_csv(texts))["batch_id"]

    process_next(db)  # one chunk of three: the standby sees it processing
    _caught_up(db, replica_db)
    _paused(replica_db)
    score_everything(db)
    assert _texts(client, public_id) == texts  # all of it, not the standby's first chunk


def test_a_cancelled_batch_whose_chunk_in_hand_commits_later_reads_from_the_primary(
    make_app, db, replica_db, standby, database_url
):
    """The standby shows the batch cancelled, as the primary does, but not the chunk a runner
    finished after the cancel: neither a page nor a follower may read it there."""
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    public_id = upload_file(client, make_csv(sample_texts(250, seed=6)))["batch_id"]
    held = claim_chunk(db, "test:0", 600)  # a runner holds the first chunk
    db.commit()
    assert client.post(f"/batch/{public_id}/cancel").status_code == 200
    _caught_up(db, replica_db)
    _paused(replica_db)
    assert process(db, held)  # the chunk in hand commits its 100 rows, on the primary only
    db.commit()
    assert len(_texts(client, public_id)) == 100
    events = client.get(f"/batch/{public_id}/events").get_data(as_text=True).splitlines()
    names = [line[len("event: ") :] for line in events if line.startswith("event: ")]
    rows = [json.loads(line[len("data: ") :])["rows"] for line in events if line.startswith('data: {"rows"')]
    assert names[-1] == "end" and sum(len(chunk) for chunk in rows) == 100


def test_page_numbers_that_write_checkpoints_use_the_primary(make_app, db, replica_db, standby, database_url):
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    client = make_app(standby.url(dbname))
    public_id = upload_file(client, make_csv(["good"] * 120 + ["bad"] * 80))["batch_id"]
    score_everything(db)
    _caught_up(db, replica_db)
    _paused(replica_db)
    answer = client.get(f"/batch/{public_id}/results?sentiment=positive&per_page=100&page=2")
    assert answer.status_code == 200 and len(answer.json["results"]) == 20
    assert db.execute("SELECT count(*) FROM result_checkpoints").fetchone()[0] > 0


def test_an_unreachable_replica_sends_reads_to_the_primary(make_app, db, tmp_path, caplog):
    client = make_app(f"{UNREACHABLE}?host={tmp_path}&port=1")
    texts = sample_texts(120, seed=9)
    public_id = upload_file(client, make_csv(texts))["batch_id"]
    score_everything(db)
    assert _texts(client, public_id) == texts
    assert client.get(f"/batch/{public_id}/results.ndjson").status_code == 200
    assert _texts(client, public_id) == texts
    # Tried once, then left alone for RETRY_SECONDS: one warning for three reads.
    assert caplog.text.count("replica failed") == 1


def test_a_download_checks_the_standby_it_streams_from(make_app, db, replica_db, standby, second_standby):
    # READ_DATABASE_URL may lead to several standbys: one that has not replayed the batch must not
    # stream it, whichever one the check happened to reach.
    dbname = db.info.dbname
    lagging = wait_for(lambda: _connect(second_standby.url(dbname)), timeout=60)
    try:
        _caught_up(db, lagging)
        _paused(lagging)
        hosts = f"{standby.socket_dir},{second_standby.socket_dir}"
        ports = f"{standby.port},{second_standby.port}"
        # A replica pool of two connections (DB_POOL_SIZE + MAX_EXPORTS).
        client = make_app(
            f"postgresql://postgres@/{dbname}?host={hosts}&port={ports}&load_balance_hosts=random",
            db_pool_size=1,
            max_exports=1,
        )
        texts = sample_texts(300, seed=11)
        public_id = upload_file(client, make_csv(texts))["batch_id"]
        score_everything(db)
        _caught_up(db, replica_db)
        # The pool's two connections go one to each standby (libpq picks one at random per
        # connection: ask until both came). It hands them out in turn, so a check and a stream on
        # two different connections would reach different standbys.
        pool = client.application.extensions["db_replica"].pool
        kept: dict[int, psycopg.Connection] = {}
        for _ in range(200):
            conn = pool.getconn(timeout=60)  # a busy machine may take more than the pool's 2 s
            if conn.info.port in kept:
                conn.close()  # the pool drops it and connects anew
                pool.putconn(conn)
            else:
                kept[conn.info.port] = conn
            if len(kept) == 2:
                break
        assert set(kept) == {standby.port, second_standby.port}
        for conn in kept.values():
            pool.putconn(conn)
        for _ in range(4):  # each export's check comes to the other connection than the last one's
            with client.get(f"/batch/{public_id}/results.csv") as exported:  # closed: its export slot is free
                assert [row["text"] for row in csv.DictReader(io.StringIO(exported.text))] == texts
        for _ in range(4):
            assert _texts(client, public_id) == texts
    finally:
        lagging.execute("SELECT pg_wal_replay_resume()")
        lagging.close()


@pytest.mark.parametrize("table", ["batches", "batch_results", "batch_inputs"])
def test_a_standby_whose_replay_holds_a_lock_is_left_for_the_primary(
    make_app, db, replica_db, standby, caplog, table
):
    client = make_app(standby.url(db.info.dbname))
    texts = sample_texts(150, seed=13)
    public_id = upload_file(client, make_csv(texts))["batch_id"]
    score_everything(db)
    # The standby replays an ACCESS EXCLUSIVE lock on a table the pages read, then stops replaying
    # before the unlock.
    with psycopg.connect(db.info.dsn) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        locker.execute("SELECT pg_switch_wal()")  # the lock's record goes out now
        _caught_up(db, replica_db)
        _paused(replica_db)
    _mark_on_primary(db, public_id)
    # The check waits CHECK_SECONDS at most, then the primary answers; the next requests skip the standby.
    assert set(_texts(client, public_id)) == {MARK}
    assert set(_texts(client, public_id)) == {MARK}
    assert caplog.text.count("replica failed") == 1
    assert "statement timeout" in caplog.text or "lock timeout" in caplog.text


def test_a_busy_replica_pool_sends_one_read_to_the_primary_and_stays_in_use(
    make_app, db, replica_db, standby
):
    client = make_app(standby.url(db.info.dbname))
    public_id = upload_file(client, make_csv(sample_texts(120, seed=17)))["batch_id"]
    score_everything(db)
    _caught_up(db, replica_db)
    app = client.application
    replica = app.extensions["db_replica"]
    with app.test_request_context():
        from core import batches
        from core.clients import LOCAL_USER

        with app.extensions["db_pool"].caller_connection(LOCAL_USER) as conn:
            batch = batches.get(conn, public_id)
        replica.pool.resize(replica.pool.max_size, replica.pool.max_size)
        replica.pool.wait(timeout=60)  # every connection open: none is slow to come below
        held = [replica.checked(LOCAL_USER, batch) for _ in range(replica.pool.max_size)]
        assert all(h.__enter__() is not None for h in held)  # every connection in use
        with replica.checked(LOCAL_USER, batch) as conn:
            assert conn is None  # none free in time: this read goes to the primary
        assert replica.available()  # busy is not down
        for h in held:
            h.__exit__(None, None, None)
        with replica.checked(LOCAL_USER, batch) as conn:
            assert conn is not None
