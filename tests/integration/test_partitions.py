"""Retention as DROP, not DELETE: batch_results and batch_row_errors are
partitioned by batch id range; a batch's rows land in its range's partition, made ahead or by the
upload; purge detaches and drops a partition only once every batch of its range is gone, and
reaps rows otherwise; reads work across partitions, each one index range in one
partition (EXPLAIN, custom and generic plans); the web roles reach partitions only through the
parents."""

from __future__ import annotations

import csv
import io
import json
import threading

import psycopg
import pytest
import requests
from psycopg import sql

from core import batches, clients
from core.batches import ordering
from core.queries import q
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import score_everything, upload_file

SPAN = 10


def _id(db, public_id: str) -> int:  # type: ignore[no-untyped-def]
    return db.execute("SELECT id FROM batches WHERE public_id = %s", (public_id,)).fetchone()[0]


def _next_id_is(db, batch_id: int) -> None:  # type: ignore[no-untyped-def]
    db.execute("SELECT setval('batches_id_seq', %s)", (batch_id - 1,))


def _partitions(db) -> dict[str, tuple[int | None, int]]:  # type: ignore[no-untyped-def]
    rows = db.execute("SELECT partition, first_batch, end_batch FROM batch_partitions").fetchall()
    return {name: (first, end) for name, first, end in rows}


def _reap_all(db, ttl: float = 0) -> None:  # type: ignore[no-untyped-def]
    batches.purge(db, ttl)
    batches.reap(db, budget_seconds=float("inf"), older_than_seconds=ttl)


def test_a_batchs_rows_land_in_its_ranges_partitions(client, db):
    _next_id_is(db, 23)
    public_id = upload_file(client, make_csv(["nice", "", "awful"]))["batch_id"]  # "" is set aside
    score_everything(db)
    assert _id(db, public_id) == 23
    assert _partitions(db)["batch_results_p20"] == (20, 30)  # made by the upload
    where = "WHERE batch_id = 23 GROUP BY 1"
    assert db.execute(f"SELECT tableoid::regclass::text, count(*) FROM batch_results {where}").fetchall() == [
        ("batch_results_p20", 2)
    ]
    assert db.execute(
        f"SELECT tableoid::regclass::text, count(*) FROM batch_row_errors {where}"
    ).fetchall() == [("batch_row_errors_p20", 1)]


def test_a_new_partition_has_the_parents_indexes_and_no_web_privileges(client, db):
    _next_id_is(db, 40)
    upload_file(client, make_csv(["nice"]))
    indexes = {
        r[0]
        for r in db.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN "
            "('batch_inputs_p40', 'batch_results_p40', 'batch_result_keys_p40')"
        )
    }
    # Scoring writes into batch_results alone, and it has one index: its primary key.
    assert indexes == {
        "batch_inputs_pkey_p40",
        "batch_results_pkey_p40",
        "batch_result_keys_pkey_p40",
        "batch_result_keys_sentiment_idx_p40",
        "batch_result_keys_compound_idx_p40",
    }
    for role in ("sentiment_web", "sentiment_web_admin"):
        for table in (
            "batch_inputs_p40",
            "batch_results_p40",
            "batch_row_errors_p40",
            "batch_result_keys_p40",
        ):
            assert not db.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", (role, table)).fetchone()[0]
    owner = "SELECT tableowner FROM pg_tables WHERE tablename = %s"
    assert db.execute(owner, ("batch_results_p40",)).fetchone() == db.execute(owner, ("batches",)).fetchone()


def test_row_security_holds_through_the_parents_and_partitions_are_refused(app, client, db):
    keys = {name: clients.create_key(db, name) for name in ("alice", "bob")}
    mine = upload_file(client, make_csv(["nice", ""]), key=keys["alice"])["batch_id"]
    upload_file(client, make_csv(["awful", ""]), key=keys["bob"])
    score_everything(db)
    with app.extensions["db_pool"].caller_connection(clients.Caller("alice", "alice", admin=False)) as conn:
        seen = conn.execute("SELECT DISTINCT batch_id FROM batch_results").fetchall()
        errors = conn.execute("SELECT DISTINCT batch_id FROM batch_row_errors").fetchall()
        assert seen == errors == [(_id(db, mine),)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM batch_results_p0")


def test_concurrent_uploads_make_partitions_while_runners_make_them_ahead(serve, runners, db):
    _next_id_is(db, 1_000)  # no partition made ahead up there
    runners.start()
    runners.start()
    server = serve(MAX_UPLOADS="12")
    answers: list[int] = []

    def upload() -> None:
        files = {"file": ("x.csv", make_csv(sample_texts(300, seed=len(answers))))}
        answers.append(requests.post(f"{server.base}/batch/upload", files=files, timeout=60).status_code)

    threads = [threading.Thread(target=upload) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [202] * 12
    wait_for(
        lambda: db.execute("SELECT bool_and(status = 'completed') FROM batches").fetchone()[0], timeout=120
    )
    # Every batch's rows in its own range's partition, exactly once.
    placed = db.execute(
        "SELECT batch_id, tableoid::regclass::text, count(*) FROM batch_results GROUP BY 1, 2"
    ).fetchall()
    assert sorted((b, t, n) for b, t, n in placed) == [
        (b, f"batch_results_p{b - b % SPAN}", 300) for b in range(1_000, 1_012)
    ]
    # The next range is made ahead by the runners' housekeeping (every turn, between rounds).
    wanted = {"batch_results_p1000", "batch_results_p1010", "batch_results_p1020"}
    wait_for(lambda: wanted <= set(_partitions(db)), timeout=60)


def test_a_range_left_with_one_of_its_two_partitions_gets_the_other_again(client, db):
    # A drop cut short between the two tables (batch_results' goes first) leaves batch_row_errors'.
    span = db.execute("SELECT batch_partition_span()").fetchone()[0]
    first = db.execute("SELECT last_value + 1 FROM batches_id_seq").fetchone()[0] + 2 * span
    first -= first % span
    _next_id_is(db, first)
    db.execute("SELECT batch_partitions_ensure(%s)", (first,))
    db.execute(f"ALTER TABLE batch_results DETACH PARTITION batch_results_p{first}")
    db.execute(f"DROP TABLE batch_results_p{first}")
    public_id = upload_file(client, make_csv(["nice", "awful"]))["batch_id"]
    assert _id(db, public_id) == first and f"batch_results_p{first}" in _partitions(db)
    score_everything(db)  # its results have a partition to go to
    assert client.get(f"/batch/{public_id}").get_json()["status"] == "completed"


def test_making_partitions_ahead_does_not_wait_on_an_uploads_range_lock(db, database_url, caplog):
    # An upload making the next range's partitions holds its range's lock until it commits; the
    # runner's housekeeping skips the turn instead of holding up the runner's database thread.
    from core.batches import partitions

    caplog.set_level("INFO", logger="core.batches.partitions")
    span = db.execute("SELECT batch_partition_span()").fetchone()[0]
    next_id = db.execute("SELECT last_value + 1 FROM batches_id_seq").fetchone()[0]
    ahead = next_id + 2 * span  # a range no partition holds yet
    _next_id_is(db, ahead)
    upload = psycopg.connect(database_url)
    runner = psycopg.connect(database_url, autocommit=True)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (partitions.make_ahead(runner), done.set()))
    try:
        upload.execute("SELECT pg_advisory_xact_lock(20561, %s)", ((ahead - ahead % span) // span,))
        worker.start()
        worker.join(60)
        back_while_locked = done.is_set()
    finally:
        upload.close()  # the upload commits: a runner still waiting goes on
        worker.join(60)
        runner.close()
    assert back_while_locked  # back, without the partitions of that range
    assert "not made ahead this turn" in caplog.text
    partitions.make_ahead(db)  # once the upload is over, the next turn makes them
    assert f"batch_results_p{ahead - ahead % span}" in _partitions(db)


def _fill_range(client, db, first: int, texts: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    """Batches first .. first + SPAN - 1, all scored, and one more past them (the range is closed)."""
    _next_id_is(db, first)
    ids = [_id(db, upload_file(client, make_csv(texts))["batch_id"]) for _ in range(SPAN + 1)]
    score_everything(db)
    assert ids == list(range(first, first + SPAN + 1))
    return ids


def _expire(db, ids: list[int], after: str = "1 hour") -> None:  # type: ignore[no-untyped-def]
    db.execute(
        "UPDATE batches SET completed_at = now() - interval '2 hours', expires_after = %s::interval "
        "WHERE id = ANY(%s)",
        (after, ids),
    )


def test_purge_drops_a_partition_only_once_every_batch_of_it_is_gone(client, db):
    ids = _fill_range(client, db, 20, ["nice", "awful", ""])
    neighbour = ids[-1]  # batch 30, in the next range
    _expire(db, ids[:9])  # batch 29 has no expiry: the partition cannot go
    _reap_all(db)
    assert "batch_results_p20" in _partitions(db)
    # The nine expired batches were reaped as rows, the tenth is untouched.
    left = db.execute(
        "SELECT batch_id, count(*) FROM batch_results WHERE batch_id < 30 GROUP BY 1"
    ).fetchall()
    assert left == [(29, 2)]
    assert db.execute("SELECT count(*) FROM batches WHERE id < 30").fetchone()[0] == 1

    batches.delete(db, db.execute("SELECT public_id FROM batches WHERE id = 29").fetchone()[0])
    _reap_all(db)
    parts = _partitions(db)
    assert "batch_results_p20" not in parts and "batch_row_errors_p20" not in parts
    assert "batch_results_p30" in parts and "batch_row_errors_p30" in parts
    # (p0 and p10, made ahead, held no batch at all: their closed ranges went too.)
    assert db.execute("SELECT count(*) FROM batches WHERE id < 30").fetchone()[0] == 0
    # The neighbour in the next range keeps everything.
    assert (
        db.execute("SELECT count(*) FROM batch_results WHERE batch_id = %s", (neighbour,)).fetchone()[0] == 2
    )
    assert (
        db.execute("SELECT count(*) FROM batch_row_errors WHERE batch_id = %s", (neighbour,)).fetchone()[0]
        == 1
    )


def test_a_partition_detached_but_not_dropped_is_dropped_next_time(client, db):
    # A runner stopped between the DETACH and the DROP leaves a table attached to nothing.
    from core.batches.partitions import DROPPING

    ids = _fill_range(client, db, 20, ["nice", "awful"])
    db.execute(sql.SQL("COMMENT ON TABLE batch_results_p20 IS {}").format(sql.Literal(DROPPING)))
    db.execute("ALTER TABLE batch_results DETACH PARTITION batch_results_p20")
    db.execute("CREATE TABLE batch_results_p20_notes (x int)")  # named alike, not a partition's name
    # An operator's copy of an old partition, restored and not attached (yet): not the purge's.
    db.execute("CREATE TABLE batch_results_p990 (LIKE batch_results)")
    # One the purge detached, that cannot be dropped (a view on it): logged, and the turn goes on.
    db.execute("CREATE TABLE batch_row_errors_p980 (LIKE batch_row_errors)")
    db.execute(sql.SQL("COMMENT ON TABLE batch_row_errors_p980 IS {}").format(sql.Literal(DROPPING)))
    db.execute("CREATE VIEW kept_errors AS SELECT * FROM batch_row_errors_p980")
    _reap_all(db)
    tables = {row[0] for row in db.execute("SELECT relname FROM pg_class WHERE relname LIKE 'batch_%%'")}
    assert "batch_results_p20" not in tables and "batch_results_p20_notes" in tables
    assert {"batch_results_p990", "batch_row_errors_p980"} <= tables
    # Every other partition is still attached, with its rows.
    assert {"batch_row_errors_p20", "batch_results_p30"} <= set(_partitions(db))
    assert db.execute("SELECT count(*) FROM batch_results WHERE batch_id = %s", (ids[-1],)).fetchone()[0] == 2


def test_rows_of_expired_batches_wait_for_their_partition_to_go_whole(client, db):
    ids = _fill_range(client, db, 50, ["nice", "awful"])
    _expire(db, ids[:9])
    # The tenth expires soon (within WAIT_SECONDS): the nine wait for the drop instead of a DELETE.
    db.execute(
        "UPDATE batches SET completed_at = now(), expires_after = interval '10 minutes' WHERE id = %s",
        (ids[9],),
    )
    _reap_all(db)
    assert db.execute("SELECT count(*) FROM batch_results_p50").fetchone()[0] == 20
    assert (
        db.execute(
            "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'batch_results_p50'"
        ).fetchone()[0]
        == 0
    )
    _expire(db, ids[9:10])
    _reap_all(db)
    assert "batch_results_p50" not in _partitions(db)
    assert db.execute("SELECT count(*) FROM batches WHERE id BETWEEN 50 AND 59").fetchone()[0] == 0


def test_deleting_one_batch_still_removes_its_rows_and_nothing_else(client, db):
    gone = upload_file(client, make_csv(["nice", "awful", ""]))["batch_id"]
    kept = upload_file(client, make_csv(["nice", ""]))["batch_id"]
    score_everything(db)
    assert client.delete(f"/batch/{gone}").status_code == 204
    assert client.get(f"/batch/{gone}").status_code == 404
    _reap_all(db)
    counts = (
        "SELECT (SELECT count(*) FROM batch_results WHERE batch_id = %(b)s), "
        "(SELECT count(*) FROM batch_row_errors WHERE batch_id = %(b)s)"
    )
    assert db.execute(counts, {"b": 1}).fetchone() == (0, 0)
    assert db.execute(counts, {"b": 2}).fetchone() == (1, 1)
    assert "batch_results_p0" in _partitions(db)  # the range is open and holds a live batch
    assert client.get(f"/batch/{kept}/results").get_json()["total_results"] == 1


def test_reads_work_in_every_partition(client, db):
    made = {}
    for first in (3, 17, 64):  # three ranges; 64's partition is made by its upload
        _next_id_is(db, first)
        made[first] = upload_file(client, make_csv([*sample_texts(2_100, seed=first), ""]))["batch_id"]
    score_everything(db)
    for public_id in made.values():
        page = client.get(f"/batch/{public_id}/results?per_page=1000&page=2").get_json()
        assert [r["row"] for r in page["results"]] == list(range(1_001, 2_001))
        with client.get(f"/batch/{public_id}/results.csv") as response:  # closed: frees the export slot
            exported = response.get_data(as_text=True)
        assert len(list(csv.reader(io.StringIO(exported)))) == 1 + 2_100
        errors = client.get(f"/batch/{public_id}/errors").get_json()
        assert [e["reason"] for e in errors["errors"]] == ["empty_text"]
        # Ordered pages from checkpoints (core.batches.ordering), page 2 past the first checkpoint.
        ordered = client.get(f"/batch/{public_id}/results?order=compound&per_page=700&page=2").get_json()
        compounds = db.execute(
            "SELECT row_number FROM batch_results WHERE batch_id = %s AND error IS NULL "
            "ORDER BY compound, row_number",
            (_id(db, public_id),),
        ).fetchall()
        assert [r["row"] for r in ordered["results"]] == [r[0] for r in compounds[700:1_400]]
        # Its checkpoints were written in its own partition's batch: every CHECKPOINT_EVERY-th row of
        # the list, and rank 0, which says they reach its end; and the mark of its sort keys.
        written = db.execute(
            "SELECT count(*) FROM result_checkpoints WHERE batch_id = %s", (_id(db, public_id),)
        ).fetchone()[0]
        assert written == 2 + len(compounds) // ordering.CHECKPOINT_EVERY


def _plan_nodes(node: dict):  # type: ignore[no-untyped-def]
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _scans(plan: list) -> list[dict]:
    """The plan's reads of the partitioned batch tables (a DELETE's ModifyTable names the parent)."""
    nodes = _plan_nodes(plan[0]["Plan"])
    return [n for n in nodes if n.get("Relation Name", "").startswith(TABLES) and "Scan" in n["Node Type"]]


TABLES = ("batch_inputs", "batch_results", "batch_row_errors", "batch_result_keys")


# Every statement that reads or removes rows of the partitioned tables, with its parameters.
PARAMS = {"after_row": 0, "before_row": 10**6, "limit": 50, "sentiment": "positive", "low": 1, "high": 5_000}


def _statements(batch_id: int) -> dict[str, sql.Composable]:
    order = ordering.ORDERS["-compound"]
    reap = {
        f"batches_reap_{kind}_{table}": sql.SQL(q(f"batches_reap_{kind}")).format(
            table=sql.Identifier(table), key=sql.Identifier(key)
        )
        for kind in ("span", "range")
        for table, key in (
            ("batch_inputs", "row_number"),
            ("batch_results", "row_number"),
            ("batch_row_errors", "error_number"),
            ("batch_result_keys", "row_number"),
        )
    }
    plain = [
        "batch_results_page",
        "batch_result_keys_page",
        "batch_results_page_before",
        "batch_result_keys_page_before",
        "batch_results_export_rows",
        "batch_row_errors_page",
    ]
    return {
        **{name: sql.SQL(q(name)) for name in plain},
        "batch_results_ordered": ordering._statement(
            order, None, ["positive", 0.5, 10], "batch_results_ordered"
        ),
        "batch_results_ordered_sentiment": ordering._statement(
            ordering.ORDERS["compound"], "negative", ["negative", -0.5, 10], "batch_results_ordered"
        ),
        "batch_results_ordered_keys": ordering._statement(
            order, None, ["positive", 0.5, 10], "batch_results_ordered_keys"
        ),
        **reap,
    }


PARTITIONS_OF_17 = ("batch_inputs_p10", "batch_results_p10", "batch_row_errors_p10", "batch_result_keys_p10")


@pytest.fixture
def three_partitions(client, db):  # type: ignore[no-untyped-def]
    for first in (3, 17, 25):
        _next_id_is(db, first)
        upload_file(client, make_csv([*sample_texts(3_000, seed=first), *[""] * 20]))
    score_everything(db)
    for batch_id in (3, 17, 25):  # sort keys, as the first filtered or ordered page writes them
        assert db.execute(q("batch_result_keys_write"), {"batch_id": batch_id, "step": 10**9}).fetchone()[0]
    db.execute(
        "ANALYZE batch_inputs; ANALYZE batch_results; ANALYZE batch_row_errors; ANALYZE batch_result_keys"
    )
    # Tiny tables: judge the plan's shape, as test_ordered_pages does.
    db.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
    return 17


def test_every_statement_reads_one_partition_by_one_index_range(db, three_partitions):
    for name, statement in _statements(three_partitions).items():
        params = {**PARAMS, "batch_id": three_partitions}
        plan = db.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + statement, params).fetchone()[0]
        scans = _scans(plan)
        assert scans, (name, plan)
        for node in scans:
            assert node["Relation Name"] in PARTITIONS_OF_17, (name, node)
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)
        # Ranges are read in index order: nothing is sorted below a LIMIT (the ordered pages sort
        # their page's rows once more, above it).
        for limit in (n for n in _plan_nodes(plan[0]["Plan"]) if n["Node Type"] == "Limit"):
            assert '"Sort"' not in json.dumps(limit), name
        if not any(n["Node Type"] == "Limit" for n in _plan_nodes(plan[0]["Plan"])):
            assert '"Sort"' not in json.dumps(plan), name


def test_a_generic_plan_prunes_at_run_time_to_one_index_range(db, three_partitions):
    """psycopg prepares a statement run often; PostgreSQL may then use one generic plan for every
    batch id: it must prune the other partitions when it runs."""
    db.execute("SET plan_cache_mode = force_generic_plan")
    for name, statement in _statements(three_partitions).items():
        text = statement.as_string(db)
        names: list[str] = []
        for key in PARAMS | {"batch_id": 0}:
            if f"%({key})s" in text:
                names.append(key)
                text = text.replace(f"%({key})s", f"${len(names)}")
        db.execute(f"PREPARE generic_{name} AS {text}")
        values = ", ".join(
            str(three_partitions) if n == "batch_id" else repr(PARAMS[n]).replace('"', "'") for n in names
        )
        plan = db.execute(f"EXPLAIN (FORMAT JSON) EXECUTE generic_{name}({values})").fetchone()[0]
        db.execute(f"DEALLOCATE generic_{name}")
        appends = [n for n in _plan_nodes(plan[0]["Plan"]) if n["Node Type"] in ("Append", "Merge Append")]
        assert appends and all(n.get("Subplans Removed", 0) >= 2 for n in appends), (name, plan)
        for node in _scans(plan):
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)


def test_a_claim_plans_and_locks_one_partition_of_the_inputs_however_many_there_are(client, db):
    """The claim learns its batch while it runs; its rows are read by a statement planned with the
    batch id known, so a claim costs the same with 2 partitions or hundreds."""
    from core.batches.queue import claim_chunks, configure_session

    for low in range(0, 1_000, 10):  # a hundred ranges of batches kept
        db.execute("SELECT batch_partitions_ensure(%s)", (low,))
    _next_id_is(db, 555)
    upload_file(client, make_csv(sample_texts(300)))
    with psycopg.connect(db.info.dsn) as runner:
        configure_session(runner)
        chunks = claim_chunks(runner, "test:0", 60, limit=2)
        assert [len(c.texts) for c in chunks] == [100, 100]
        locked = runner.execute(
            "SELECT c.relname FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
            "WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'batch_inputs%' AND c.relkind = 'r'"
        ).fetchall()
        runner.rollback()
    assert locked == [("batch_inputs_p550",)]
