"""Safe retries: an upload sent again with the same Idempotency-Key and the same
file answers the first batch; another file is a 422; racing twins make one batch; keys are per client
and expire."""

from __future__ import annotations

import threading

import requests

from core import clients
from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import assert_nothing_written, post_file, table_counts

CSV = make_csv(["good", "bad", "fine"])


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_retry_with_the_same_key_and_file_answers_the_first_batch(client, db):
    first = post_file(client, CSV, headers=keyed("order-42"))
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    stored = table_counts(db)
    again = post_file(client, CSV, headers=keyed("order-42"))
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["batch_id"] == first.get_json()["batch_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert_nothing_written(db, before=stored)
    # The same file as a raw body, with the same key: the same upload (the file is what counts,
    # not the multipart framing around it).
    raw = client.post(
        "/batch/upload", data=CSV, content_type="text/csv", headers={"Idempotency-Key": "order-42"}
    )
    assert raw.status_code == 202 and raw.get_json()["batch_id"] == first.get_json()["batch_id"]
    # Without a key, every upload is a new batch.
    assert post_file(client, CSV).get_json()["batch_id"] != first.get_json()["batch_id"]


def test_a_replay_takes_no_batch_id_and_makes_no_partition(client, db):
    """Ten replays of one key, enough to pass a partition range's ten ids had each taken one."""
    post_file(client, CSV, headers=keyed("order-43"))
    last_id = "SELECT last_value FROM pg_sequences WHERE sequencename = 'batches_id_seq'"
    partitions = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'batch_inputs'::regclass"
    before = db.execute(last_id).fetchone()[0], db.execute(partitions).fetchone()[0]
    for _ in range(10):
        assert post_file(client, CSV, headers=keyed("order-43")).headers["Idempotent-Replayed"] == "true"
    assert (db.execute(last_id).fetchone()[0], db.execute(partitions).fetchone()[0]) == before


def test_the_same_key_with_another_file_or_options_is_a_422(client, db):
    first = post_file(client, CSV, headers=keyed("k1")).get_json()["batch_id"]
    stored = table_counts(db)
    for answer in (
        post_file(client, make_csv(["other"]), headers=keyed("k1")),
        post_file(client, CSV, headers=keyed("k1"), fields={"metadata": '{"project": "q3"}'}),
        post_file(client, CSV, headers=keyed("k1"), fields={"strict": "true"}),
    ):
        assert answer.status_code == 422
        problem = answer.get_json()
        assert problem["type"].endswith("idempotency-key-reused") and problem["batch_id"] == first
    assert_nothing_written(db, before=stored)


def test_keys_belong_to_their_client(client, db):
    alice, bob = clients.create_key(db, "alice"), clients.create_key(db, "bob")
    mine = post_file(client, CSV, headers=keyed("same"), key=alice).get_json()["batch_id"]
    theirs = post_file(client, CSV, headers=keyed("same"), key=bob)
    assert theirs.status_code == 202 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["batch_id"] != mine
    assert post_file(client, CSV, headers=keyed("same"), key=alice).get_json()["batch_id"] == mine


def test_a_key_expires_and_a_deleted_batch_frees_it(client, db):
    first = post_file(client, CSV, headers=keyed("k")).get_json()["batch_id"]
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    second = post_file(client, CSV, headers=keyed("k"))
    assert second.status_code == 202 and second.get_json()["batch_id"] != first
    client.post(f"/batch/{second.get_json()['batch_id']}/cancel")
    assert client.delete(f"/batch/{second.get_json()['batch_id']}").status_code == 204
    third = post_file(client, CSV, headers=keyed("k"))
    assert "Idempotent-Replayed" not in third.headers
    assert third.get_json()["batch_id"] not in (first, second.get_json()["batch_id"])
    from core import batches

    assert batches.forget_idempotency_keys(db, 24 * 3600) == 0
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    assert batches.forget_idempotency_keys(db, 24 * 3600) == 1


def test_a_refused_upload_leaves_its_key_free(client, db):
    bad = post_file(client, b"id,text\nr1,\n", headers=keyed("k"), fields={"strict": "true"})
    assert bad.status_code == 400
    assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)
    good = post_file(client, CSV, headers=keyed("k"))
    assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers


def test_a_key_must_be_1_to_255_characters(client, db):
    assert post_file(client, CSV, headers=keyed("x" * 256)).status_code == 400
    assert post_file(client, CSV, headers=keyed("")).status_code == 400
    assert post_file(client, CSV, headers=keyed("x" * 255)).status_code == 202
    assert table_counts(db)["batches"] == 1


def test_twins_racing_each_other_make_one_batch(serve, db):
    server = serve()
    body = make_csv(sample_texts(50_000))
    answers: list[requests.Response] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(
            requests.post(
                f"{server.base}/batch/upload",
                files={"file": ("x.csv", body)},
                headers={"Idempotency-Key": "twin"},
                timeout=120,
            )
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (1,)
    codes = sorted(a.status_code for a in answers)
    assert codes in ([202, 202], [202, 409]), [a.text[:200] for a in answers]
    made = [a.json()["batch_id"] for a in answers if a.status_code == 202]
    assert len(set(made)) == 1
    if codes == [202, 202]:
        assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    else:
        busy = next(a for a in answers if a.status_code == 409)
        assert busy.json()["type"].endswith("idempotency-key-in-use") and int(busy.headers["Retry-After"]) > 0
