"""A finished batch's sort keys: written by the requests for its filtered and ordered lists, a
bounded step each, one writer at a time, never for a deleted batch; until they are all written those
lists answer 503 page-not-ready, and then the same rows a recount gives."""

from __future__ import annotations

import psycopg
import pytest

from core import batches
from core.batches import sort_keys
from core.errors import NotFound, NotReady
from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import score_everything


@pytest.fixture
def finished(upload, db):  # type: ignore[no-untyped-def]
    public_id = upload(make_csv(sample_texts(350, seed=61)))["batch_id"]
    score_everything(db)
    return batches.get(db, public_id)


def _keys(db) -> int:  # type: ignore[no-untyped-def]
    return db.execute("SELECT count(*) FROM batch_result_keys").fetchone()[0]


def test_keys_are_written_a_step_at_a_time(db, finished):
    scored = db.execute("SELECT count(*) FROM batch_results WHERE error IS NULL").fetchone()[0]
    assert [batches.write_keys(db, finished, step=100) for _ in range(4)] == [False, False, False, True]
    assert _keys(db) == scored
    # All written: nothing more to do, and no progress note is left behind.
    assert batches.write_keys(db, finished, step=100) and _keys(db) == scored
    notes = db.execute("SELECT rank FROM result_checkpoints WHERE listing = 'keys'").fetchall()
    assert notes == [(0,)]


def test_lists_answer_not_ready_until_the_keys_are_written(client, db, finished, monkeypatch):
    monkeypatch.setattr(sort_keys, "STEP", 100)
    url = f"/batch/{finished.public_id}/results?sentiment=negative&per_page=500"
    answers = [client.get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 503, 200]
    assert (
        answers[0].get_json()["type"].endswith("page-not-ready") and answers[0].headers["Retry-After"] == "1"
    )
    expected = db.execute(
        "SELECT row_number FROM batch_results WHERE vader_label(compound) = 'negative' ORDER BY row_number"
    ).fetchall()
    assert [r["row"] for r in answers[-1].get_json()["results"]] == [r[0] for r in expected]


def test_a_second_writer_does_not_wait_for_the_first(db, finished, database_url):
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        second.execute("SET lock_timeout = '1s'")  # were it to wait, this would fail it
        assert not batches.write_keys(first, finished, step=100)  # holds the right to write until commit
        assert not batches.write_keys(second, finished, step=100)  # at once, without writing
        first.commit()
        second.commit()
    assert _keys(db) > 0  # the first one's step


def test_a_deleted_batch_gets_no_keys(db, finished):
    db.execute("UPDATE batches SET deleted_at = now() WHERE id = %s", (finished.id,))
    with pytest.raises(NotFound):
        batches.write_keys(db, finished)
    assert _keys(db) == 0


def test_reading_a_list_before_its_keys_is_refused(db, finished):
    with pytest.raises(NotReady):
        batches.require_keys(db, finished)
    assert batches.write_keys(db, finished)
    batches.require_keys(db, finished)
