"""Migration 0012 on a database with batches: the old tables become one partition (attached, not
copied), their rows and indexes kept, and the service goes on writing, reading and purging."""

from __future__ import annotations

import shutil
import uuid

import pytest

from core import batches
from core.migrations import load_migrations, migrate
from core.queries import sql_dir
from tests.integration.conftest import _janitor

RESULT = (
    "INSERT INTO batch_results (batch_id, row_number, client_id, text, sentiment, score, compound, "
    "pos, neu, neg) "
)


@pytest.fixture
def at_0011(pg_cluster, tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in sorted((sql_dir() / "migrations").glob("*.sql"))[:11]:
        shutil.copy(path, folder)
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name):
        url = pg_cluster.url(name)
        assert migrate(url, folder=folder) == list(range(1, 12))
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
        assert indexes == 3  # the old ones, adopted by the parents' indexes (none built twice)
        # New batches get their own partitions; the old ones are read through the parent.
        new = db.execute(
            "INSERT INTO batches (public_id, chunk_size) VALUES ('batch-' || md5('new'), 100) RETURNING id"
        ).fetchone()[0]
        assert new == 14  # still in the legacy range
        db.execute(RESULT + "VALUES (14, 1, 'r', 't', 'neutral', 0, 0, 0, 1, 0)")
        assert db.execute("SELECT count(*) FROM batch_results WHERE batch_id = 3").fetchone()[0] == 3
        # Once every batch below 20 is deleted, the legacy partitions go whole.
        db.execute("SELECT setval('batches_id_seq', 25)")
        db.execute("UPDATE batches SET deleted_at = now()")
        for _ in range(2):  # ten batch rows per call
            batches.reap(db, budget_seconds=float("inf"))
        names = {r[0] for r in db.execute("SELECT partition FROM batch_partitions")}
        assert not {"batch_results_legacy", "batch_row_errors_legacy"} & names
        assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
