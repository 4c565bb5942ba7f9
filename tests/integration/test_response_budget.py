"""Bounded answers: result pages stop at a character budget, exports write bounded blocks and
fetch bounded rounds, and at most MAX_EXPORTS downloads stream at once per worker."""

from __future__ import annotations

import json
import re
import tracemalloc

import pytest

from tests.helpers import make_csv
from tests.integration.helpers import score_everything
from webapp import create_app
from webapp.exports import SEND_BYTES, _fetch_rows
from webapp.pagination import PAGE_BYTES

ROWS = 1000
TEXT = 20_000


@pytest.fixture
def long_texts(client, db) -> str:
    """A completed batch of 1,000 rows whose texts are 20,000 characters long (MAX_TEXT_CHARS)."""
    body = make_csv([f"good text {index}" for index in range(ROWS)])
    created = client.post("/batch/upload", data=body, content_type="text/csv").get_json()
    score_everything(db)
    db.execute("UPDATE batch_inputs SET text = repeat('é', %s)", (TEXT,))
    return created["batch_id"]


def _measured(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_page_of_long_texts_stops_at_the_budget_and_the_cursors_reach_every_row(client, long_texts):
    url = f"/batch/{long_texts}/results"
    answer, peak = _measured(lambda: client.get(f"{url}?page=1&per_page=1000"))
    page = answer.get_json()
    fits = PAGE_BYTES // (6 * TEXT + len('"r1000"'))  # each 'é' is 6 bytes of JSON
    assert 1 <= len(page["results"]) <= fits < 1000
    assert (
        page["next_cursor"] and "after=" in answer.headers["Link"] and "page=2" not in answer.headers["Link"]
    )
    # Not a 20 M-character document: neither the rows read nor the answer built.
    assert len(answer.data) < PAGE_BYTES + 200 * 1000
    assert peak < 20 * PAGE_BYTES, peak  # a round of rows, the page, its JSON; not 20 M characters

    seen = [row["row"] for row in page["results"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(f"{url}?per_page=1000&after={cursor}").get_json()
        assert 1 <= len(page["results"]) <= fits
        seen += [row["row"] for row in page["results"]]
        cursor = page["next_cursor"]
    assert seen == list(range(1, ROWS + 1))


def test_pages_read_backwards_stop_at_the_budget_too(client, long_texts):
    url = f"/batch/{long_texts}/results"
    first = client.get(f"{url}?per_page=1000").get_json()
    second = client.get(f"{url}?per_page=1000&after={first['next_cursor']}").get_json()
    # The batch page's Previous link reads backwards from the first row of the second page.
    html = client.get(
        f"/batch/{long_texts}?per_page=1000&after={first['next_cursor']}", headers={"Accept": "text/html"}
    ).get_data(as_text=True)
    before = re.search(r'href="[^"]*before=([^"&#]+)', html).group(1)
    back = client.get(f"{url}?per_page=1000&before={before}").get_json()
    assert [r["row"] for r in back["results"]] == [r["row"] for r in first["results"]]
    assert second["results"][0]["row"] == first["results"][-1]["row"] + 1
    assert len(html) < 8 * PAGE_BYTES


def test_short_texts_fill_a_page_of_1000_as_before(client, db):
    body = make_csv([f"fine {index}" for index in range(1500)])
    created = client.post("/batch/upload", data=body, content_type="text/csv").get_json()
    score_everything(db)
    answer = client.get(f"/batch/{created['batch_id']}/results?page=1&per_page=1000")
    assert len(answer.get_json()["results"]) == 1000
    assert "page=2" in answer.headers["Link"]  # read in rounds, but the page form is kept


def test_ndjson_is_written_in_bounded_blocks_from_bounded_fetches(client, long_texts):
    assert _fetch_rows(TEXT) * TEXT <= 8_000_000
    answer = client.get(f"/batch/{long_texts}/results.ndjson", buffered=False)

    def consume():
        blocks = [len(block) for block in answer.response]
        answer.close()
        return blocks

    blocks, peak = _measured(consume)
    assert max(blocks) <= SEND_BYTES
    assert sum(blocks) > ROWS * TEXT  # every text, in full
    # One fetch of rows in memory at a time, not the whole 20 M-character batch.
    assert peak < 20_000_000, peak


def test_exports_past_the_cap_get_503_until_one_finishes(database_url, db, long_texts):
    app = create_app({"database_url": database_url, "migrate_on_start": False, "max_exports": 1})
    try:
        client = app.test_client()
        first = client.get(f"/batch/{long_texts}/results.csv", buffered=False)
        assert first.status_code == 200
        busy = client.get(f"/batch/{long_texts}/results.ndjson")
        assert busy.status_code == 503 and busy.mimetype == "application/problem+json"
        assert busy.get_json()["type"] == "/problems/too-many-exports"
        assert int(busy.headers["Retry-After"]) > 0
        b"".join(first.response)
        first.close()
        again = client.get(f"/batch/{long_texts}/results.ndjson")
        assert again.status_code == 200
        assert len([json.loads(line) for line in again.data.splitlines()]) == ROWS
    finally:
        app.extensions["db_pool"].close()
