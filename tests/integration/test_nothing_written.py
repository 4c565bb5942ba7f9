"""assert_nothing_written (tests/integration/helpers.py) sees a row in any table: those the
migrations make, partitioned ones through their parents, and one made after it was written."""

from __future__ import annotations

import pytest

from tests.helpers import make_csv
from tests.integration.helpers import assert_nothing_written, table_counts, user_tables


def test_every_table_is_listed_once_and_partitions_through_their_parents(db):
    tables = user_tables(db)
    assert {
        "batches",
        "batch_inputs",
        "batch_results",
        "batch_row_errors",
        "chunks",
        "webhook_events",
    } <= set(tables)
    assert "schema_migrations" not in tables
    partitions = {name for (name,) in db.execute("SELECT inhrelid::regclass::text FROM pg_inherits")}
    assert partitions and not partitions & set(tables)
    assert_nothing_written(db)


def test_a_row_set_aside_is_seen_in_batch_row_errors(db, upload):
    before = table_counts(db)
    upload(make_csv(["fine", ""]))  # the empty text is set aside
    assert table_counts(db)["batch_row_errors"] == before["batch_row_errors"] + 1
    with pytest.raises(AssertionError, match="batch_row_errors"):
        assert_nothing_written(db, before=before)


def test_a_table_made_later_is_covered_by_itself(db):
    db.execute("CREATE TABLE made_later (x integer)")
    assert_nothing_written(db)
    db.execute("INSERT INTO made_later VALUES (1)")
    with pytest.raises(AssertionError, match=r"'made_later': \(0, 1\)"):
        assert_nothing_written(db)
