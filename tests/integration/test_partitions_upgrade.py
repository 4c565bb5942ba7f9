"""Migrations on a database with batches. 0012: the old tables become one partition (attached, not
copied), their rows and indexes kept, and the service goes on writing, reading and purging. 0019:
the texts move into batch_inputs, finished batches stay readable and a batch in flight completes."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from contextlib import contextmanager

import pytest

from core import batches
from core.migrations import load_migrations, migrate
from core.queries import sql_dir
from tests.integration.conftest import _janitor

RESULT = (
    "INSERT INTO batch_results (batch_id, row_number, client_id, text, sentiment, score, compound, "
    "pos, neu, neg) "
)


@contextmanager
def _migrated_to(pg_cluster, tmp_path, version: int):  # type: ignore[no-untyped-def]
    """A new database with the migrations up to ``version`` applied."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in sorted((sql_dir() / "migrations").glob("*.sql"))[:version]:
        shutil.copy(path, folder)
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name):
        url = pg_cluster.url(name)
        assert migrate(url, folder=folder) == list(range(1, version + 1))
        yield url


@pytest.fixture
def at_0011(pg_cluster, tmp_path):  # type: ignore[no-untyped-def]
    with _migrated_to(pg_cluster, tmp_path, 11) as url:
        yield url


@pytest.fixture
def at_0018(pg_cluster, tmp_path):  # type: ignore[no-untyped-def]
    with _migrated_to(pg_cluster, tmp_path, 18) as url:
        yield url


def test_0012_attaches_the_existing_rows_and_the_service_goes_on(at_0011):
    import psycopg

    with psycopg.connect(at_0011, autocommit=True) as db:
        db.execute(
            "INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, "
            "neutral_count, invalid_count, completed_at) "
            "SELECT 'batch-' || md5(g::text), 100, 'completed', 4, 3, 3, 1, now() "
            "FROM generate_series(1, 13) AS g"
        )
        db.execute(
            RESULT + "SELECT b, r, 'r', 't', 'neutral', 0, 0, 0, 1, 0 "
            "FROM generate_series(1, 13) AS b, generate_series(1, 3) AS r"
        )
        db.execute(
            "INSERT INTO batch_row_errors (batch_id, error_number, line_number, reason, detail) "
            "SELECT b, 1, 5, 'empty_text', 'empty' FROM generate_series(1, 13) AS b"
        )
        assert migrate(at_0011) == [m.version for m in load_migrations()][11:]

        parts = db.execute(
            "SELECT partition, first_batch, end_batch FROM batch_partitions ORDER BY 1"
        ).fetchall()
        assert ("batch_results_legacy", None, 20) in parts and ("batch_row_errors_legacy", None, 20) in parts
        assert ("batch_results_p20", 20, 30) in parts  # the next ids' partitions, made ahead
        assert db.execute("SELECT count(*) FROM batch_results_legacy").fetchone()[0] == 39
        indexes = db.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'batch_results_legacy'"
        ).fetchone()[0]
        assert indexes == 1  # the old primary key, adopted (0019 dropped the other two)
        # New batches get their own partitions; the old ones are read through the parent.
        new = db.execute(
            "INSERT INTO batches (public_id, chunk_size) VALUES ('batch-' || md5('new'), 100) RETURNING id"
        ).fetchone()[0]
        assert new == 14  # still in the legacy range
        db.execute(
            "INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg) "
            "VALUES (14, 1, 0, 0, 1, 0)"
        )
        assert db.execute("SELECT count(*) FROM batch_results WHERE batch_id = 3").fetchone()[0] == 3
        # Once every batch below 20 is deleted, the legacy partitions go whole.
        db.execute("SELECT setval('batches_id_seq', 25)")
        db.execute("UPDATE batches SET deleted_at = now()")
        for _ in range(2):  # ten batch rows per call
            batches.reap(db, budget_seconds=float("inf"))
        names = {r[0] for r in db.execute("SELECT partition FROM batch_partitions")}
        assert not {"batch_results_legacy", "batch_row_errors_legacy"} & names
        assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0


def test_0019_keeps_finished_batches_readable_and_completes_one_in_flight(at_0018):
    import psycopg

    from core.batches import store
    from tests.integration.helpers import score_everything

    with psycopg.connect(at_0018, autocommit=True) as db:
        # A finished batch: its texts are in batch_results. One in flight: its first chunk scored
        # (texts in the results), the other two waiting (texts in staging, batch_rows).
        db.execute(
            "INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, "
            "positive_count, negative_count, completed_at) "
            "VALUES ('batch-' || md5('done'), 100, 'completed', 2, 2, 1, 1, now())"
        )
        db.execute(
            "INSERT INTO batches (public_id, chunk_size, total_count, processed_count, neutral_count) "
            "VALUES ('batch-' || md5('flight'), 100, 300, 100, 100)"
        )
        db.execute(
            RESULT + "VALUES (1, 1, 'd1', 'lovely', 'positive', 0.59, 0.59, 0, 0, 1), "
            "(1, 2, 'd2', 'awful', 'negative', 0.46, -0.46, 1, 0, 0)"
        )
        db.execute(
            RESULT
            + "SELECT 2, r, 'f' || r, 'text ' || r, 'neutral', 0, 0, 0, 1, 0 FROM generate_series(1, 100) r"
        )
        db.execute(
            "INSERT INTO batch_rows (batch_id, row_number, client_id, text, line_number) "
            "SELECT 2, r, 'f' || r, CASE WHEN r % 2 = 0 THEN 'great stuff' ELSE 'terrible' END, r + 1 "
            "FROM generate_series(101, 300) r"
        )
        db.execute(
            "INSERT INTO chunks (batch_id, first_row, last_row, state, finished_at) VALUES "
            "(2, 1, 100, 'done', now()), (2, 101, 200, 'ready', NULL), (2, 201, 300, 'ready', NULL)"
        )
        assert migrate(at_0018)[:2] == [19, 20]  # and on; 0020 logs the results written before it

        assert db.execute("SELECT to_regclass('batch_rows')").fetchone()[0] is None
        assert db.execute("SELECT count(*) FROM batch_inputs").fetchone()[0] == 302
        columns = [
            r[0]
            for r in db.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'batch_results'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]
        assert columns == ["batch_id", "row_number", "compound", "pos", "neu", "neg", "error"]
        # The finished batch reads as it did, by page and by sentiment.
        done = store.get(db, "batch-" + hashlib.md5(b"done").hexdigest())
        rows = store.results(db, done, sentiment=None, limit=10)
        assert [(r.client_id, r.text, r.sentiment, r.score) for r in rows] == [
            ("d1", "lovely", "positive", 0.59),
            ("d2", "awful", "negative", 0.46),
        ]
        assert batches.write_keys(db, done)  # the sort keys of a batch that finished before 0019
        assert [r.text for r in store.results(db, done, sentiment="negative", limit=10)] == ["awful"]
        # The batch in flight completes: its waiting chunks are claimed from batch_inputs.
        assert score_everything(db) == 2
        flight = store.get(db, "batch-" + hashlib.md5(b"flight").hexdigest())
        assert (flight.status, flight.processed_count) == ("completed", 300)
        # Its commit log: the chunk scored before the upgrade, then the two after, each row once.
        from core.batches.feed import Position, rows_after

        logged = rows_after(db, flight, Position(), 100)
        items = [[item["row"] for item in json.loads(b"[" + chunk.json + b"]")] for chunk in logged]
        assert str(logged[0].position) == "1.1" and items[0][0] == 1
        assert sorted(row for chunk in items for row in chunk) == list(range(1, 301))
        assert [chunk.rows for chunk in rows_after(db, done, Position(), 100)] == [2]
        assert (flight.positive_count, flight.negative_count, flight.neutral_count) == (100, 100, 100)
        scored = db.execute(
            "SELECT count(*), count(DISTINCT row_number) FROM batch_results WHERE batch_id = 2"
        ).fetchone()
        assert scored == (300, 300)
        rows = store.results(db, flight, sentiment=None, after=99, limit=3)
        assert [(r.row_number, r.client_id, r.text, r.line_number) for r in rows] == [
            (100, "f100", "text 100", None),
            (101, "f101", "terrible", 102),
            (102, "f102", "great stuff", 103),
        ]
