"""Fair shares per client, then per batch, and the per-key quota, with real runners and a
real gunicorn where concurrency matters."""

from __future__ import annotations

import threading

import requests

from core import clients
from core.batches.queue import claim_chunk
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import assert_nothing_written, post_file, table_counts


def _claim_order(db) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """(client, batch id) of every ready chunk, in the order the runners' own claim hands them out:
    claimed one at a time until the queue is empty."""
    owners = dict(db.execute("SELECT id, client FROM batches").fetchall())
    order = []
    while (chunk := claim_chunk(db, "test:0", 60)) is not None:
        order.append((owners[chunk.batch_id], chunk.batch_id))
    return order


def test_turns_go_round_the_clients_then_round_each_clients_batches(client, db):
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    for rows in (1000, 1000, 1000):  # three batches of 10 chunks
        assert post_file(client, make_csv(sample_texts(rows)), key=a).status_code == 202
    assert post_file(client, make_csv(sample_texts(1000)), key=b).status_code == 202
    order = _claim_order(db)
    # Clients alternate while both have work: b gets every other turn, not one in four.
    assert [owner for owner, _ in order[:20]] == ["a", "b"] * 10
    # a's turns go round its three batches.
    a_batches = [batch for owner, batch in order if owner == "a"]
    first_three = sorted(set(a_batches))
    assert a_batches[:9] == first_three * 3


def test_a_client_with_one_batch_is_not_starved_by_one_with_twenty(client, db, runners):
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    for _ in range(20):
        assert post_file(client, make_csv(sample_texts(5_000)), key=a).status_code == 202
    assert post_file(client, make_csv(sample_texts(20_000)), key=b).status_code == 202
    runners.start()
    runners.start()

    def when_b_completes():  # type: ignore[no-untyped-def]
        # One snapshot: if b is complete in it, a's count is at least what it was at that moment.
        status, a_done = db.execute(
            "SELECT (SELECT status FROM batches WHERE client = 'b'),"
            " (SELECT sum(processed_count + failed_count) FROM batches WHERE client = 'a')"
        ).fetchone()
        return a_done if status == "completed" else None

    a_done = wait_for(when_b_completes, timeout=600, interval=0.05)
    assert a_done <= 50_000, f"a had {a_done} of its 100,000 rows scored when b's 20,000 were done"


def test_an_upload_past_the_quota_is_refused_and_leaves_nothing(database_url, db):
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False, "quota_queued_rows": 1000})
    a, b = clients.create_key(db, "a"), clients.create_key(db, "b")
    try:
        web = app.test_client()
        assert post_file(web, make_csv(sample_texts(600)), key=a).status_code == 202
        before = table_counts(db)
        refused = post_file(web, make_csv(sample_texts(600)), key=a)
        assert refused.status_code == 429
        assert refused.mimetype == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        problem = refused.get_json()
        assert problem["type"].endswith("quota-exceeded") and problem["quota"] == 1000
        assert problem["queued_rows"] == 600
        assert_nothing_written(db, before=before)
        # Other keys have their own room; what fits still fits.
        assert post_file(web, make_csv(sample_texts(600)), key=b).status_code == 202
        assert post_file(web, make_csv(sample_texts(400)), key=a).status_code == 202
        # Full: refused before the body is read.
        full = post_file(web, make_csv(sample_texts(1)), key=a)
        assert full.status_code == 429 and full.get_json()["queued_rows"] == 1000
    finally:
        app.extensions["db_pool"].close()


def test_two_uploads_racing_for_the_last_room_cannot_both_fit(serve, db):
    server = serve(QUOTA_QUEUED_ROWS="1000", MAX_UPLOADS="4")  # a key may hold two uploads at once
    key = clients.create_key(db, "a")
    body = make_csv(sample_texts(600))
    answers: list[int] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answer = requests.post(
            f"{server.base}/batch/upload",
            files={"file": ("x.csv", body)},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        answers.append(answer.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 429]
    assert db.execute("SELECT count(*), sum(total_count) FROM batches").fetchone() == (1, 600)
