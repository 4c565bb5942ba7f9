"""Cancelling a 1,000,000-row batch in its first seconds, again and again, through a real gunicorn
with two runners scoring it and another client's batch beside it: every cancel is answered (no
timeout), the batch stops, and the other client's batch completes with every row once."""

from __future__ import annotations

import time

import requests

from core import clients
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.test_faults import assert_exactly_once

BIG_ROWS = 1_000_000
CANCELS = 3


def _status(base: str, batch_id: str, key: str) -> dict:
    answer = requests.get(f"{base}/batch/{batch_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    answer.raise_for_status()
    return answer.json()


def _upload(base: str, body: bytes, key: str) -> str:
    answer = requests.post(
        f"{base}/batch/upload",
        files={"file": ("x.csv", body)},
        headers={"Authorization": f"Bearer {key}"},
        timeout=600,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["batch_id"]


def test_cancelling_a_million_row_batch_early_many_times(web_server, runners, db, database_url):
    base = web_server.base
    heavy, other = clients.create_key(db, "heavy"), clients.create_key(db, "other")
    big = make_csv([f"row {n} is fine" for n in range(BIG_ROWS)])
    beside = _upload(base, make_csv(sample_texts(20_000, seed=91)), other)
    runners.start()
    runners.start()
    answered_in = []
    for _ in range(CANCELS):
        batch_id = _upload(base, big, heavy)
        wait_for(lambda b=batch_id: _status(base, b, heavy)["processed_count"] > 0, timeout=60, interval=0.1)
        started = time.monotonic()
        cancel = requests.post(
            f"{base}/batch/{batch_id}/cancel", headers={"Authorization": f"Bearer {heavy}"}, timeout=60
        )
        answered_in.append(time.monotonic() - started)
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["status"] == "cancelled"
        # Only the chunks runners held when it was cancelled are still scored: a few rounds' worth.
        wait_for(lambda b=batch_id: _settled(db, b), timeout=60)
        scored = _status(base, batch_id, heavy)
        assert scored["status"] == "cancelled"
        assert scored["processed_count"] < BIG_ROWS // 10, scored
    status = wait_for(lambda: _final(base, beside, other), timeout=300)
    assert (status["status"], status["failed_count"]) == ("completed", 0)
    assert_exactly_once(database_url, beside, 20_000, status["summary"])
    print(f"cancels answered in {', '.join(f'{s * 1e3:.0f} ms' for s in answered_in)}")


def _settled(db, batch_id: str) -> bool:  # type: ignore[no-untyped-def]
    """No chunk of the batch is in a runner's hands: the ones held when it was cancelled are done."""
    query = (
        "SELECT count(*) FROM chunks c JOIN batches b ON b.id = c.batch_id "
        "WHERE b.public_id = %s AND c.state = 'claimed'"
    )
    return db.execute(query, (batch_id,)).fetchone()[0] == 0


def _final(base: str, batch_id: str, key: str) -> dict | None:
    status = _status(base, batch_id, key)
    return status if status["status"] != "processing" else None
