"""Keyset pages, in both forms, equal one full ordered scan of the results."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import score_everything


@pytest.fixture
def completed_batch(upload, db) -> str:
    """A 537-row batch scored in this process (no runner needed)."""
    batch_id = upload(make_csv(sample_texts(537, seed=11)))["batch_id"]
    score_everything(db)
    return batch_id


def full_scan(db, batch_id: str) -> list[tuple]:
    return db.execute(
        "SELECT r.row_number, i.client_id, i.text, vader_label(r.compound), abs(r.compound), r.compound "
        "FROM batch_results r JOIN batches b ON b.id = r.batch_id "
        "JOIN batch_inputs i ON i.batch_id = r.batch_id AND i.row_number = r.row_number "
        "WHERE b.public_id = %s ORDER BY r.row_number",
        (batch_id,),
    ).fetchall()


def as_tuples(results: list[dict]) -> list[tuple]:
    return [(r["row"], r["id"], r["text"], r["sentiment"], r["score"], r["compound"]) for r in results]


@pytest.mark.parametrize("per_page", [1, 50, 100, 536, 537, 1000])
def test_page_form_equals_full_scan(client, db, completed_batch, per_page):
    collected, page = [], 1
    while True:
        response = client.get(f"/batch/{completed_batch}/results?page={page}&per_page={per_page}")
        body = response.get_json()
        assert response.status_code == 200
        assert (body["page"], body["per_page"], body["total_results"]) == (page, per_page, 537)
        if not body["results"]:
            break
        collected += body["results"]
        more = len(collected) < 537
        assert ("Link" in response.headers) == more
        if more:
            assert response.headers["Link"] == (
                f'</batch/{completed_batch}/results?page={page + 1}&per_page={per_page}>; rel="next"'
            )
        page += 1
    assert as_tuples(collected) == full_scan(db, completed_batch)


@pytest.mark.parametrize("per_page", [7, 250])
def test_cursor_form_follows_link_headers(client, db, completed_batch, per_page):
    first = client.get(f"/batch/{completed_batch}/results?per_page={per_page}").get_json()
    collected = list(first["results"])
    url = f"/batch/{completed_batch}/results?after={first['next_cursor']}&per_page={per_page}"
    while url:
        response = client.get(url)
        body = response.get_json()
        assert body["page"] is None
        collected += body["results"]
        link = response.headers.get("Link")
        if link is None:
            assert body["next_cursor"] is None
            break
        url = link[1 : link.index(">")]
        assert parse_qs(urlparse(url).query)["after"] == [body["next_cursor"]]
    assert as_tuples(collected) == full_scan(db, completed_batch)


def test_page_past_the_end_is_empty(client, completed_batch):
    body = client.get(f"/batch/{completed_batch}/results?page=999&per_page=50").get_json()
    assert body["results"] == [] and body["next_cursor"] is None


def test_tampered_or_foreign_cursor_is_rejected(client, upload, db, completed_batch):
    first = client.get(f"/batch/{completed_batch}/results?per_page=10").get_json()
    cursor = first["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    response = client.get(f"/batch/{completed_batch}/results?after={tampered}")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"

    other = upload(make_csv(["good"]))["batch_id"]
    score_everything(db)
    response = client.get(f"/batch/{other}/results?after={cursor}")
    assert response.status_code == 400
    assert "another batch" in response.get_json()["detail"]


def test_cursor_page_is_one_index_range(db, completed_batch):
    """The page query is an index scan on the primary key, never a scan of the batch."""
    from core.queries import q

    batch = db.execute("SELECT id FROM batches WHERE public_id = %s", (completed_batch,)).fetchone()[0]
    db.execute("SET enable_seqscan = off")  # tiny test tables: judge the plan's shape
    plan = db.execute(
        "EXPLAIN (FORMAT JSON) " + q("batch_results_page"),
        {"batch_id": batch, "after_row": 500, "limit": 11},
    ).fetchone()[0][0]["Plan"]
    text = str(plan)
    assert "batch_results_pkey" in text
    assert "Sort" not in text and "Offset" not in text


def test_a_cursor_from_a_page_link_works_in_the_api_and_back(client, completed_batch):
    """The batch page and the API page the same list with the same cursors."""
    html = client.get(
        f"/batch/{completed_batch}?sentiment=negative&per_page=5", headers={"Accept": "text/html"}
    )
    assert html.status_code == 200
    page_cursor = parse_qs(urlparse(_link(html.get_data(as_text=True), "next")).query)["after"][0]
    api = client.get(f"/batch/{completed_batch}/results?sentiment=negative&per_page=5&after={page_cursor}")
    assert api.status_code == 200, api.get_json()
    first_api_page = client.get(f"/batch/{completed_batch}/results?sentiment=negative&per_page=5").get_json()
    second = api.get_json()["results"]
    assert second and second[0]["row"] > first_api_page["results"][-1]["row"]
    assert {r["sentiment"] for r in second} == {"negative"}
    # ... and the API's next_cursor opens the same page on the batch page.
    again = client.get(
        f"/batch/{completed_batch}?sentiment=negative&per_page=5&after={first_api_page['next_cursor']}",
        headers={"Accept": "text/html"},
    )
    assert again.status_code == 200
    assert f">{second[0]['row']}</td>" in again.get_data(as_text=True)


def _link(html: str, rel: str) -> str:
    import html as html_module
    import re

    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    assert match, f"no {rel} link"
    return html_module.unescape(match.group(1))
