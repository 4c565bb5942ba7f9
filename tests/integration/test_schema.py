"""The schema: migrations equal schema.sql, the migrator is safe in parallel,
the claim query uses its partial index, and psql users get comments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from core.batches.queue import configure_session
from core.migrations import load_migrations, migrate
from core.queries import all_queries, q, sql_dir
from tests.helpers import make_csv
from tests.integration.conftest import REPO, _janitor


@pytest.fixture
def empty_db_url(pg_cluster):
    name = f"empty_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name):
        yield pg_cluster.url(name)


def _dump(cluster, url: str) -> str:
    out = subprocess.run(
        [cluster.pg_bin("pg_dump"), "--schema-only", "--no-owner", "--exclude-table=schema_migrations", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("--"))


def test_migrations_give_the_same_database_as_schema_sql(pg_cluster, database_url, empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute((sql_dir() / "schema.sql").read_text())
    assert _dump(pg_cluster, database_url) == _dump(pg_cluster, empty_db_url)


def test_migrator_is_safe_from_several_processes_at_once(empty_db_url):
    env = dict(os.environ, DATABASE_URL=empty_db_url, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "core.migrations"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    expected = f"applied {len(load_migrations())} migration(s)"
    assert sum(expected in o for o in outputs) == 1, outputs
    assert sum("schema is up to date" in o for o in outputs) == 3, outputs
    with psycopg.connect(empty_db_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in load_migrations()]
    assert migrate(empty_db_url) == []


def test_changed_migration_is_refused(empty_db_url):
    migrate(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(Exception, match="changed after it was applied"):
        migrate(empty_db_url)


def test_claim_reads_the_partial_index_of_ready_chunks(db):
    # Enough done chunks that a scan would be the wrong plan, then fresh statistics.
    db.execute(
        "INSERT INTO batches (public_id, chunk_size, total_count) VALUES (%s, 100, 2000000)",
        ("batch-" + "a" * 32,),
    )
    db.execute(
        "INSERT INTO chunks (batch_id, first_row, last_row, state) "
        "SELECT 1, g, g + 99, CASE WHEN g > 1990000 THEN 'ready' ELSE 'done' END "
        "FROM generate_series(1, 2000000, 100) g"
    )
    db.execute("ANALYZE chunks")
    plan = db.execute(
        "EXPLAIN (FORMAT JSON) " + q("chunks_claim"), {"runner": "t", "lease_seconds": 1, "limit": 4}
    ).fetchone()[0]
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    on_chunks = [n for n in nodes if n.get("Relation Name") == "chunks"]
    assert any(n.get("Index Name") == "chunks_ready_idx" for n in on_chunks), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in on_chunks), nodes


def test_a_big_upload_leaves_the_claim_reading_the_index_in_order(client, upload, db):
    from core.batches.ingest import ANALYZE_AFTER_CHUNKS

    upload(make_csv(["fine"] * (ANALYZE_AFTER_CHUNKS * 100)))
    plan = db.execute(
        "EXPLAIN (FORMAT JSON) " + q("chunks_claim"), {"runner": "t", "lease_seconds": 1, "limit": 4}
    ).fetchone()[0]
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    # Read in (fair_key, id) order and stop at the first unlocked one; not all fetched and sorted.
    ready = [n for n in nodes if n.get("Index Name") == "chunks_ready_idx"]
    # (Both the head of the queue and the more of its batch are read that way.)
    assert ready and {n["Node Type"] for n in ready} == {"Index Scan"}, nodes


def test_claim_and_finish_read_one_partition_by_key_ranges_whatever_the_statistics(client, upload, db):

    upload(make_csv(["fine"] * 20_000))
    # Statistics that make the inputs look tiny: a hash join or a scan would look cheap.
    db.execute("DELETE FROM batch_inputs WHERE row_number > 400")
    db.execute("ANALYZE batch_inputs")
    upload(make_csv(["fine"] * 20_000))
    configure_session(db)  # as a runner's connection is
    params = {"runner": "t", "lease_seconds": 1, "limit": 4}
    # The claim's rows are read by batch_inputs_of_chunks, planned with the batch id known: the
    # transaction's own scan counters show which partitions it read, and how (rolled back, so
    # nothing stays leased).
    counters = (
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname LIKE 'batch_inputs_p%'"
    )
    with _rolled_back(db):
        before = {name: (seq, idx) for name, seq, idx in db.execute(counters)}
        claim = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + q("chunks_claim"), params).fetchone()[0]
        after = {name: (seq, idx) for name, seq, idx in db.execute(counters)}
    read = {name: (seq - before[name][0], idx - before[name][1]) for name, (seq, idx) in after.items()}
    read = {name: scans for name, scans in read.items() if scans != (0, 0)}
    assert len(read) == 1 and next(iter(read.values()))[0] == 0, read  # one partition, by index only
    nodes = list(_plan_nodes(claim[0]["Plan"]))
    assert any(n.get("Function Name") == "batch_inputs_of_chunks" for n in nodes), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes  # nor of the queue
    finish_params = {
        "chunk_ids": [1, 2],
        "claim_tokens": [None, None],
        "batch_id": 1,
        "row_numbers": [1],
        "errors": [None],
        **{key: [0.5] for key in ("compounds", "pos", "neu", "neg")},
        **{"runner": "t", "host": "h", "pid": 1, "scorer": "fast"},
    }
    finish = db.execute("EXPLAIN (FORMAT JSON) " + q("chunks_finish"), finish_params).fetchone()[0]
    nodes = list(_plan_nodes(finish[0]["Plan"]))
    # It only inserts into the results (no read of them or of the inputs), and reads the queue and
    # the batch row by key.
    assert not any(
        n.get("Relation Name", "").startswith(("batch_inputs", "batch_results_")) for n in nodes
    ), nodes
    assert any(
        n["Node Type"] == "ModifyTable" and n.get("Relation Name") == "batch_results" for n in nodes
    ), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes


@contextmanager
def _rolled_back(db):
    """Run the block in a transaction of ``db`` that is rolled back."""
    import psycopg

    with db.transaction():
        yield
        raise psycopg.Rollback()


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _explain_prepared(db, name: str, params: dict) -> list:  # type: ignore[no-untyped-def]
    """EXPLAIN ANALYZE of query ``name`` as psycopg runs a statement it has prepared: EXPLAIN given
    the values as parameters plans them as constants, whatever plan_cache_mode says."""
    text, order = q(name), list(params)
    for number, key in enumerate(order, 1):
        text = text.replace(f"%({key})s", f"${number}")
    db.execute(f"PREPARE explained AS {text}")
    try:
        values = sql.SQL(", ").join(sql.Literal(params[key]) for key in order)
        explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE explained({})").format(values)
        return db.execute(explain).fetchone()[0]
    finally:
        db.execute("DEALLOCATE explained")


def test_every_table_has_a_comment(db):
    missing = db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') "
        "AND obj_description(c.oid, 'pg_class') IS NULL"
    ).fetchall()
    assert missing == []


def _numbered_placeholders(text: str) -> str:
    """Rewrite psycopg's %(name)s placeholders as $1, $2, ... for PREPARE."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, text)


def test_every_named_query_is_valid_sql(db):
    """PREPARE each statement: its syntax, tables and columns are checked (COPY and
    ANALYZE, which cannot be prepared, are run instead)."""
    for name, query in all_queries().items():
        if query.text.startswith("COPY"):
            continue
        if query.text.startswith("ANALYZE"):
            db.execute(query.text)
            continue
        # Placeholders core.batches fills in with psycopg.sql: the columns of a Batch, a table and its
        # key, and an order's pieces (core.batches.ordering).
        text = query.text.replace("{columns}", "*").replace("{table}", "batch_results")
        text = text.replace("{key}", "row_number").replace("{filter}", "true").replace("{after}", "")
        text = text.replace("{order}", "row_number").replace("{position}", "to_jsonb(row_number)")
        text = text.replace("{keys}", "row_number").replace("{source}", "batch_result_keys")
        text = text.replace("{outer_order}", "k.row_number")
        # A fragment of the CSV export: one kept column's cell, read from batch_inputs AS i.
        text = text.replace("{fields}", "").replace("{header}", "true").replace("{k}", "1")
        if text.startswith("CASE"):
            text = f"SELECT {text} FROM batch_inputs AS i"
        db.execute(f"PREPARE check_{name} AS {_numbered_placeholders(text)}")
        db.execute(f"DEALLOCATE check_{name}")


def _check_values(db, constraint: str) -> set[str]:
    """The words a CHECK constraint names (its IN (...) list)."""
    definition = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", (constraint,)
    ).fetchone()[0]
    return set(re.findall(r"'([a-z_]+)'::text", definition))


def test_the_code_and_the_schema_name_the_same_statuses_and_row_problems(db):
    from core.batches import FINAL_STATUSES, ROW_PROBLEMS, SENTIMENTS, STATUSES

    assert _check_values(db, "batches_status_check") == set(STATUSES)
    assert _check_values(db, "batches_completed_at_iff_finished") == set(FINAL_STATUSES)
    assert _check_values(db, "batch_row_errors_reason_check") == set(ROW_PROBLEMS)
    # The label PostgreSQL derives from compound is the runners' own, at and around the thresholds.
    import pandas as pd

    from jobrunner.scoring import label

    edges = [-1.0, -0.5, -0.05, -0.0499999, 0.0, 0.0499999, 0.05, 0.5, 1.0]
    in_sql = [row[0] for row in db.execute("SELECT vader_label(c) FROM unnest(%s::float8[]) AS c", (edges,))]
    assert in_sql == label(pd.Series(edges)).tolist()
    assert set(in_sql) == set(SENTIMENTS)
    assert db.execute("SELECT vader_label(NULL)").fetchone()[0] is None  # a failed row has no label


def test_batch_mirrors_the_batches_table_column_for_column(db):
    from dataclasses import fields

    from core.batches import Batch

    columns = {
        name
        for (name,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'batches'"
        )
    }
    assert {f.name for f in fields(Batch)} == columns


@pytest.mark.parametrize("export", [False, True])
@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("analyzed", ["before the upload", "before the scoring"])
def test_a_follower_reads_each_chunk_by_key_ranges_whatever_the_statistics(
    upload, db, plan_cache_mode, export, analyzed
):
    from tests.integration.helpers import score_everything

    # Statistics taken while the batch had no inputs or no results yet, as its partition's
    # seldom analyses leave them.
    if analyzed == "before the upload":
        db.execute("ANALYZE batch_results")
        db.execute("ANALYZE batch_inputs")
    public_id = upload(make_csv(["fine"] * 5_000))["batch_id"]
    if analyzed == "before the scoring":
        db.execute("ANALYZE batch_results")
        db.execute("ANALYZE batch_inputs")
    score_everything(db)
    batch_id = db.execute("SELECT id FROM batches WHERE public_id = %s", (public_id,)).fetchone()[0]
    db.execute(f"SET plan_cache_mode = {plan_cache_mode}")
    params = {"batch_id": batch_id, "after_seq": 1, "after_chunk": 0, "chunks": 20, "export": export}
    plan = _explain_prepared(db, "batch_commits_rows_after", params)
    # The plan asked for: only a custom one has the batch id as a constant.
    constant = f"batch_id = '{batch_id}'::bigint" in json.dumps(plan)
    assert constant == (plan_cache_mode == "force_custom_plan"), plan
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    scans = [n for n in nodes if n.get("Relation Name", "").startswith(("batch_results", "batch_inputs"))]
    assert scans and all(n["Node Type"] == "Index Scan" for n in scans), scans
    # Each scan reads one chunk's range (or one row) per loop: 100 rows a chunk, never the batch.
    read = [(n["Relation Name"], n["Actual Rows"]) for n in scans]
    assert all(rows <= 100 for _, rows in read), read
    assert not any("Join Filter" in n for n in nodes), nodes
    assert plan[0]["Plan"]["Actual Rows"] == 20  # one row per chunk (of 100 rows each)
