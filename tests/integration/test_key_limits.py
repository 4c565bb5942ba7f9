"""What one key can no longer do to the others: unfinished batches and rows kept per key
(QUOTA_BATCHES, QUOTA_STORED_ROWS), the default expiry once keys exist, a key's share of a
worker's upload and export slots, and partitions whose making costs the same however many
there are."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import psycopg
import pytest
import requests

from core import clients
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import (
    assert_nothing_written,
    assert_problem,
    bearer,
    post_file,
    score_everything,
    table_counts,
    uploads_copying,
)


@pytest.fixture
def limited(database_url):  # type: ignore[no-untyped-def]
    """``limited(**config)``: a Flask test client of an app with those settings."""
    from webapp import create_app

    apps = []

    def make(**config):  # type: ignore[no-untyped-def]
        apps.append(create_app({"database_url": database_url, "migrate_on_start": False, **config}))
        return apps[-1].test_client()

    yield make
    for app in apps:
        app.extensions["db_pool"].close()


def test_unfinished_batches_past_quota_batches_are_refused_and_leave_nothing(limited, db):
    web = limited(quota_batches=2)
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    for _ in range(2):
        assert post_file(web, make_csv(sample_texts(5)), key=a).status_code == 202
    before = table_counts(db)
    refused = post_file(web, make_csv(sample_texts(5)), key=a)
    problem = assert_problem(refused, 429, "quota-exceeded")
    assert int(refused.headers["Retry-After"]) > 0
    assert problem["quota"] == 2 and problem["unfinished_batches"] == 2
    assert "QUOTA_BATCHES" in problem["detail"]
    assert_nothing_written(db, before=before)
    # Another key has its own count; once a's batches finish, a has room again.
    assert post_file(web, make_csv(sample_texts(5)), key=b).status_code == 202
    score_everything(db)
    assert post_file(web, make_csv(sample_texts(5)), key=a).status_code == 202


def test_rows_kept_past_quota_stored_rows_are_refused_set_aside_rows_included(limited, db):
    web = limited(quota_stored_rows=1000)
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    # 400 rows to score and 300 set aside (empty texts): 700 kept, finished or not.
    first = post_file(web, make_csv(sample_texts(400) + [""] * 300), key=a).get_json()
    score_everything(db)
    before = table_counts(db)
    refused = post_file(web, make_csv(sample_texts(301)), key=a)
    problem = assert_problem(refused, 429, "quota-exceeded")
    assert problem["quota"] == 1000 and problem["stored_rows"] == 700
    assert "QUOTA_STORED_ROWS" in problem["detail"]
    assert_nothing_written(db, before=before)
    assert post_file(web, make_csv(sample_texts(600)), key=b).status_code == 202
    assert post_file(web, make_csv(sample_texts(300)), key=a).status_code == 202
    # Full: refused before the body is read; deleting a batch makes room.
    assert assert_problem(post_file(web, make_csv(["x"]), key=a), 429)["stored_rows"] == 1000
    score_everything(db)
    assert web.delete(f"/batch/{first['batch_id']}", headers=bearer(a)).status_code == 204
    assert post_file(web, make_csv(sample_texts(700)), key=a).status_code == 202


@pytest.mark.parametrize("setting", ["QUOTA_BATCHES", "QUOTA_STORED_ROWS"])
def test_two_uploads_racing_for_the_last_room_cannot_both_fit(serve, db, setting):
    # MAX_UPLOADS 4: a key may hold two uploads at once.
    server = serve(MAX_UPLOADS="4", **{setting: "1" if setting == "QUOTA_BATCHES" else "1000"})
    key = clients.create_key(db, "a")
    body = make_csv(sample_texts(600))
    answers: list[int] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answer = requests.post(
            f"{server.base}/batch/upload", files={"file": ("x.csv", body)}, headers=bearer(key), timeout=60
        )
        answers.append(answer.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 429]
    assert db.execute("SELECT count(*), sum(total_count) FROM batches").fetchone() == (1, 600)


def _expiries(db) -> dict[str, timedelta | None]:  # type: ignore[no-untyped-def]
    return dict(db.execute("SELECT public_id, expires_after FROM batches").fetchall())


def test_results_are_kept_30_days_by_default_once_keys_exist(limited, db):
    web = limited()
    local = post_file(web, make_csv(["x"])).get_json()["batch_id"]
    key = clients.create_key(db, "a")
    keyed = post_file(web, make_csv(["x"]), key=key).get_json()["batch_id"]
    asked = post_file(web, make_csv(["x"]), key=key, fields={"expires_after": "90d"}).get_json()["batch_id"]
    assert _expiries(db) == {local: None, keyed: timedelta(days=30), asked: timedelta(days=90)}
    # RESULTS_TTL set says what it says, off included.
    off = post_file(limited(results_ttl_seconds=0.0), make_csv(["x"]), key=key).get_json()["batch_id"]
    week = post_file(limited(results_ttl_seconds=7 * 86400.0), make_csv(["x"]), key=key).get_json()[
        "batch_id"
    ]
    assert _expiries(db)[off] is None and _expiries(db)[week] == timedelta(days=7)


def _big_finished_batch(base: str, key: str, db) -> str:  # type: ignore[no-untyped-def]
    """A finished batch of about 10 MB of texts (one text repeated: scored once)."""
    body = make_csv(["good " * 200] * 10_000)
    answer = requests.post(
        f"{base}/batch/upload", files={"file": ("x.csv", body)}, headers=bearer(key), timeout=60
    )
    assert answer.status_code == 202, answer.text
    score_everything(db)
    return answer.json()["batch_id"]


def test_one_keys_slow_readers_cannot_make_another_keys_export_a_503(serve, db):
    server = serve(MAX_EXPORTS="2")
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    big = _big_finished_batch(server.base, a, db)
    small = requests.post(
        f"{server.base}/batch/upload",
        files={"file": ("x.csv", make_csv(["fine"] * 50))},
        headers=bearer(b),
        timeout=60,
    ).json()["batch_id"]
    score_everything(db)
    stop = threading.Event()
    statuses: list[int] = []

    def slow_reader() -> None:  # a few KB/s, as `curl --limit-rate 3k` reads
        with requests.get(
            f"{server.base}/batch/{big}/results.csv", headers=bearer(a), stream=True, timeout=60
        ) as r:
            statuses.append(r.status_code)
            for _ in r.iter_content(4096):
                if stop.wait(0.5):
                    return

    readers = [threading.Thread(target=slow_reader) for _ in range(3)]
    try:
        for reader in readers:
            reader.start()
        wait_for(lambda: len(statuses) == 3, timeout=60)
        assert sorted(statuses) == [200, 503, 503]  # a holds one of the two slots, at most
        answer = requests.get(f"{server.base}/batch/{small}/results.csv", headers=bearer(b), timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.text.count("\n") == 51
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)


def _slow_upload(base: str, key: str) -> socket.socket:
    """An upload that sends its first 70 KB at once (a thread then takes it) and no more yet."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /batch/upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: text/csv\r\nContent-Length: 50000000\r\n\r\nid,text\n"
    )
    sock.sendall(head.encode() + b"r,good\n" * 10_000)
    return sock


def test_one_keys_slow_uploads_cannot_make_another_keys_upload_a_503(serve, db):
    server = serve(MAX_UPLOADS="2")
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    first = _slow_upload(server.base, a)
    second = None
    try:
        wait_for(lambda: uploads_copying(db) == 1, timeout=30)
        second = _slow_upload(server.base, a)
        second.settimeout(30)
        assert second.recv(4096).startswith(b"HTTP/1.1 503")  # a holds one of the two slots, at most
        answer = requests.post(
            f"{server.base}/batch/upload",
            files={"file": ("x.csv", make_csv(["fine"]))},
            headers=bearer(b),
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
    finally:
        first.close()
        if second is not None:
            second.close()


def _catalog_reads(db, batch_id: int) -> int:  # type: ignore[no-untyped-def]
    """Rows of pg_class and pg_inherits (tables and indexes) that one batch_partitions_ensure call
    reads, caches warm. The counters are read by oid, so reading them reads no catalog."""
    oids = [
        oid
        for (oid,) in db.execute(
            "SELECT oid FROM pg_class WHERE relname IN ('pg_class', 'pg_inherits')"
            " UNION SELECT indexrelid FROM pg_index"
            " WHERE indrelid IN ('pg_class'::regclass, 'pg_inherits'::regclass)"
        )
    ]
    reads = (
        "SELECT sum(pg_stat_get_xact_tuples_returned(o) + pg_stat_get_xact_tuples_fetched(o))"
        " FROM unnest(%s::oid[]) AS o"
    )
    ensure = "SELECT batch_partitions_ensure(%s, true), batch_partitions_ensure(%s, false)"
    with db.transaction():
        db.execute(ensure, (batch_id,) * 2)
        before = db.execute(reads, (oids,)).fetchone()[0]
        db.execute(ensure, (batch_id,) * 2)
        return db.execute(reads, (oids,)).fetchone()[0] - before


def _make_ranges(db, first: int, count: int) -> None:  # type: ignore[no-untyped-def]
    for low in range(first, first + count * 10, 250):
        with db.transaction():
            db.execute(
                "SELECT batch_partitions_ensure(low) FROM generate_series(%s::bigint, %s, 10) AS low",
                (low, min(low + 240, first + count * 10 - 10)),
            )


def test_making_a_batchs_partitions_reads_as_much_of_the_catalog_with_800_partitions_as_with_40(db):
    _make_ranges(db, 100_000, 10)
    few = _catalog_reads(db, 100_005)
    _make_ranges(db, 200_000, 190)
    assert db.execute("SELECT count(*) FROM batch_partitions").fetchone()[0] >= 800
    assert _catalog_reads(db, 100_005) == few
    # An upload still finds, or makes, its partitions.
    with psycopg.connect(db.info.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT batch_partitions_ensure(300_005, false)").fetchone()[0] is False
        assert conn.execute("SELECT batch_partitions_ensure(300_005, true)").fetchone()[0] is True
        assert conn.execute("SELECT batch_partitions_ensure(300_005, false)").fetchone()[0] is True
