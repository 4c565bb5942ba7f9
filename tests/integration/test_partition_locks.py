"""Partition upkeep and the locks it takes: an upload makes its range's partitions in a short
transaction of its own, so one upload stalled in its COPY holds up nobody's partitions; a reaper
turn waits for locks at most what is left of its budget, and ends quietly when that is spent.

Nothing here measures time: the tests hold real locks and sockets open and check what was
answered, what was logged and what was stored while they are held."""

from __future__ import annotations

import logging
import re
import threading

import psycopg
import requests

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import score_everything, upload_file, uploads_copying
from tests.rawhttp import connect, head, read_answer, still_open


def _id(db, public_id: str) -> int:  # type: ignore[no-untyped-def]
    return db.execute("SELECT id FROM batches WHERE public_id = %s", (public_id,)).fetchone()[0]


def _partitions(db) -> set[str]:  # type: ignore[no-untyped-def]
    return {row[0] for row in db.execute("SELECT partition FROM batch_partitions")}


def test_an_upload_stalled_in_its_copy_holds_up_no_other_uploads_partitions(serve, db):
    # Every upload lands in a range of ids no partition holds yet (no runner makes them ahead here).
    db.execute("ALTER SEQUENCE batches_id_seq RESTART WITH 1001 INCREMENT BY 10")
    web = serve(CLIENT_TIMEOUT="300", MAX_UPLOADS="4")
    body = make_csv(sample_texts(2_000))
    cut = 80_000  # past the 64 KiB the server waits for before a thread takes the upload
    head_ = head("POST", "/batch/upload", Content_Type="text/csv", Content_Length=str(len(body)))
    with connect(web.port, timeout=120) as stalled:
        stalled.sendall(head_ + body[:cut])
        wait_for(lambda: uploads_copying(db) == 1, timeout=60)  # its partitions made, its COPY waiting
        second = requests.post(
            f"{web.base}/batch/upload",
            data=make_csv(["nice", "awful"]),
            headers={"Content-Type": "text/csv"},
            timeout=120,
        )
        assert second.status_code == 202, second.text
        assert still_open(stalled)  # answered while the first upload was still in its COPY
        stalled.setblocking(True)
        stalled.sendall(body[cut:])
        first = read_answer(stalled)
    assert first is not None and first.status == 202, first
    placed = db.execute(
        "SELECT batch_id, tableoid::regclass::text, count(*) FROM batch_inputs GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    assert placed == [(1001, "batch_inputs_p1000", 2_000), (1011, "batch_inputs_p1010", 2)]


def test_an_upload_whose_range_the_purge_dropped_after_its_id_was_taken_makes_it_again(database_url, db):
    from core.batches import StagedRow, create, reap, reserve_id

    db.execute("SELECT setval('batches_id_seq', 28)")
    with psycopg.connect(database_url) as upload:
        batch_id = reserve_id(upload)  # 29: its range's partitions made, and committed
        assert batch_id == 29 and "batch_inputs_p20" in _partitions(db)
        # Before the upload's transaction holds the range, the purge finds it closed with no live
        # batch (29 is not written yet), and drops it whole.
        reap(db, budget_seconds=60)
        assert "batch_inputs_p20" not in _partitions(db)
        rows = [StagedRow(2, "a", "nice"), StagedRow(3, "b", "awful")]
        batch = create(upload, rows, batch_id=batch_id, chunk_size=100, filename="x.csv")
    assert batch.id == 29 and batch.total_count == 2
    placed = db.execute("SELECT tableoid::regclass::text, count(*) FROM batch_inputs GROUP BY 1").fetchall()
    assert placed == [("batch_inputs_p20", 2)]
    reap(db, budget_seconds=60)  # held by a live batch now: stays
    assert "batch_inputs_p20" in _partitions(db)


def _lock_waits_of(db, pid: int) -> list[str]:  # type: ignore[no-untyped-def]
    query = "SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND NOT granted"
    return [row[0] for row in db.execute(query, (pid,))]


def _turn_while_locked(db, database_url, reaper, settings, caplog) -> int:  # type: ignore[no-untyped-def]
    """One housekeeping turn while another session holds SHARE on batch_results (no DETACH, no
    DELETE): the turn waits for it, then gives up while it is still held. The lock_timeout the
    turn said it used, in ms."""
    from jobrunner import housekeeping

    caplog.clear()
    holder = psycopg.connect(database_url)  # what a long report's transaction could hold
    holder.execute("LOCK TABLE batch_results IN SHARE MODE")
    turn = threading.Thread(target=housekeeping.housekeep, args=(reaper, settings))
    try:
        turn.start()
        waited = wait_for(lambda: _lock_waits_of(db, reaper.info.backend_pid), timeout=60)
        turn.join(60)
        back_while_locked = not turn.is_alive()
        still_held = db.execute(
            "SELECT granted FROM pg_locks WHERE pid = %s AND relation = 'batch_results'::regclass",
            (holder.info.backend_pid,),
        ).fetchone()
    finally:
        holder.close()
        turn.join(60)
    # It did wait for the lock the other session holds (LOCK TABLE takes it on every partition) ...
    assert waited and {name.split("_p")[0] for name in waited} == {"batch_results"}, waited
    assert back_while_locked and still_held == (True,)  # ... and gave up while it was still held
    stopped = re.search(r"reaper turn stopped: a lock not granted within the (\d+) ms left", caplog.text)
    assert stopped, caplog.text
    return int(stopped.group(1))


def test_a_reaper_turn_waits_for_locks_no_longer_than_its_budget(client, db, database_url, caplog):
    from core.batches import partitions
    from core.settings import Settings
    from jobrunner import housekeeping

    caplog.set_level(logging.DEBUG, logger="jobrunner.housekeeping")
    ids = [_id(db, upload_file(client, make_csv(["nice", "awful"]))["batch_id"]) for _ in range(12)]
    assert ids == list(range(1, 13))
    score_everything(db)
    partitions.make_ahead(db)  # as the turn's first step would (it waits for the lock below too)
    settings = Settings(webhook_concurrency=0)
    budget_ms = housekeeping.REAP_BUDGET_SECONDS * 1000
    reaper = psycopg.connect(database_url, autocommit=True)

    # Batch 11 deleted: its range holds live batches, so its rows are reaped one range at a time.
    db.execute("UPDATE batches SET deleted_at = now() WHERE id = 11")
    assert 0 < _turn_while_locked(db, database_url, reaper, settings, caplog) <= budget_ms
    wait_for(
        lambda: (
            housekeeping.housekeep(reaper, settings)
            or db.execute("SELECT count(*) FROM batches WHERE id = 11").fetchone()[0] == 0
        )
    )
    assert db.execute("SELECT count(*) FROM batch_results WHERE batch_id = 11").fetchone()[0] == 0

    # Batches 1 to 9 deleted: their range is detached and dropped whole.
    db.execute("UPDATE batches SET deleted_at = now() WHERE id < 10")
    assert 0 < _turn_while_locked(db, database_url, reaper, settings, caplog) <= budget_ms
    assert "batch_results_p0" in _partitions(db)
    wait_for(lambda: housekeeping.housekeep(reaper, settings) or "batch_results_p0" not in _partitions(db))
    reaper.close()
    assert not {"batch_inputs_p0", "batch_row_errors_p0", "batch_result_keys_p0"} & _partitions(db)
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 2  # 10 and 12
    assert db.execute("SELECT count(*) FROM batch_results").fetchone()[0] == 4


def _autovacuuming(db, table: str) -> bool:  # type: ignore[no-untyped-def]
    query = (
        "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.relation = to_regclass(%s) AND a.backend_type = 'autovacuum worker'"
    )
    return db.execute(query, (table,)).fetchone()[0] > 0


def test_a_partition_autovacuum_works_on_is_detached_within_one_turn(client, db, database_url):
    """PostgreSQL cancels an autovacuum worker only for a lock request that has waited past
    deadlock_timeout (1 s), longer than a reaper turn's budget: a detach bounded by the budget
    alone gave up turn after turn for as long as a big partition's vacuum lasted."""
    from core.settings import Settings
    from jobrunner import housekeeping

    texts = sample_texts(3000, seed=61)
    ids = [_id(db, upload_file(client, make_csv(texts))["batch_id"]) for _ in range(9)]
    ids.append(_id(db, upload_file(client, make_csv(["nice"]))["batch_id"]))
    assert ids == list(range(1, 11))
    score_everything(db)
    # A vacuum of batch_inputs_p0 that lasts: a tenth of a second's sleep for about every page.
    db.execute(
        "ALTER TABLE batch_inputs_p0 SET (autovacuum_vacuum_insert_threshold = 1, "
        "autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, "
        "autovacuum_vacuum_cost_limit = 1)"
    )
    wait_for(lambda: _autovacuuming(db, "batch_inputs_p0"), timeout=120)
    db.execute("UPDATE batches SET deleted_at = now() WHERE id < 10")
    settings = Settings(webhook_concurrency=0)
    with psycopg.connect(database_url, autocommit=True) as reaper:
        housekeeping.reaper_turn(reaper, settings)
        assert "batch_inputs_p0" not in _partitions(db)  # detached in the first turn
        assert not _autovacuuming(db, "batch_inputs_p0")
        wait_for(
            lambda: (
                housekeeping.reaper_turn(reaper, settings)
                or db.execute("SELECT to_regclass('batch_inputs_p0')").fetchone()[0] is None
            )
        )
    assert not {"batch_results_p0", "batch_row_errors_p0", "batch_result_keys_p0"} & _partitions(db)
    assert db.execute("SELECT count(*) FROM batch_inputs").fetchone()[0] == 1  # batch 10's row
