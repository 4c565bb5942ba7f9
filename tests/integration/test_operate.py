"""What operators and users get beyond the pipeline: views, health, filters,
exports, the batch list, the API token and structured logs."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import subprocess

import pytest

from core.queries import q, sql_dir
from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import process_next, score_everything
from webapp import create_app


@pytest.fixture
def scored_batch(upload, db) -> str:
    texts = sample_texts(700, seed=41)
    texts[3] = '=HYPERLINK("http://evil") I love it'
    texts[4] = '+1 "great", she said,\nthen left'
    texts[5] = "-bad\ttabs"
    texts[6] = "@mention awful"
    batch_id = upload(make_csv(texts, ids=[f"id{i}" if i != 7 else "=1+1" for i in range(700)]))["batch_id"]
    score_everything(db)
    return batch_id


def test_views_answer_in_psql(db, upload, client, pg_cluster, database_url):
    batch_id = upload(make_csv(sample_texts(500, seed=42)))["batch_id"]
    from core.batches.queue import claim_chunk

    process_next(db)
    held = claim_chunk(db, "someone:42", 60)
    db.execute("INSERT INTO runners (name, host, pid, scorer) VALUES ('someone:42', 'someone', 42, 'fast')")
    progress = db.execute(
        "SELECT status, processed, total, percent::float8, rows_per_second::float8, "
        "estimated_finish IS NOT NULL "
        "FROM batch_progress WHERE batch = %s",
        (batch_id,),
    ).fetchone()
    assert progress == ("processing", 100, 500, 20.0, 1.7, True)  # 100 rows in the last minute
    depth = db.execute(
        "SELECT ready, backing_off, claimed, done FROM queue_depth WHERE batch = %s", (batch_id,)
    ).fetchone()
    assert depth == (3, 0, 1, 1)
    activity = db.execute(
        "SELECT runner, working_on, chunk, chunk_rows, chunks_done FROM runner_activity ORDER BY runner"
    ).fetchall()
    assert activity == [("someone:42", batch_id, held.chunk_id, 100, 0), ("test:0", None, None, None, 1)]
    # Every query of sql/inspect.sql runs, as psql would run the file.
    out = subprocess.run(
        [
            pg_cluster.pg_bin("psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-f",
            str(sql_dir() / "inspect.sql"),
            database_url,
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert batch_id in out.stdout


def test_health_and_readiness(client, app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_is_503_until_migrated(pg_cluster):
    import uuid

    from tests.integration.conftest import _janitor

    name = f"bare_{uuid.uuid4().hex[:10]}"
    with _janitor(pg_cluster, name):
        app = create_app({"database_url": pg_cluster.url(name), "migrate_on_start": False})
        try:
            response = app.test_client().get("/readyz")
            assert response.status_code == 503 and response.mimetype == "application/problem+json"
            assert "0001" in response.get_json()["detail"]
        finally:
            app.extensions["db_pool"].close()


def test_results_filtered_by_sentiment(client, db, scored_batch):
    status = client.get(f"/batch/{scored_batch}").get_json()
    for sentiment in ("positive", "negative", "neutral"):
        collected, url = [], f"/batch/{scored_batch}/results?sentiment={sentiment}&per_page=37"
        while url:
            response = client.get(url)
            body = response.get_json()
            assert body["total_results"] == status["summary"][sentiment]
            collected += body["results"]
            link = response.headers.get("Link")
            url = link[1 : link.index(">")] if link else None
        assert {r["sentiment"] for r in collected} == {sentiment}
        rows = [r["row"] for r in collected]
        assert rows == sorted(rows) and len(rows) == status["summary"][sentiment]
    assert client.get(f"/batch/{scored_batch}/results?sentiment=angry").status_code == 400
    # Page numbers work with a filter too (core/batches/ordering.py): page 2 holds rows 51-100 of it.
    second = client.get(f"/batch/{scored_batch}/results?sentiment=positive&page=2").get_json()["results"]
    first = client.get(f"/batch/{scored_batch}/results?sentiment=positive&per_page=100").get_json()["results"]
    assert second == first[50:100]
    unfiltered = client.get(f"/batch/{scored_batch}/results?per_page=5").get_json()["next_cursor"]
    assert (
        client.get(f"/batch/{scored_batch}/results?sentiment=positive&after={unfiltered}").status_code == 400
    )


def test_pages_read_one_partition_by_index_ranges(db, scored_batch):
    batch = db.execute("SELECT id FROM batches WHERE public_id = %s", (scored_batch,)).fetchone()[0]
    db.execute("SET enable_seqscan = off")  # tiny test tables: judge the plan's shape
    params = {"batch_id": batch, "sentiment": "negative", "after_row": 100, "limit": 51}
    for name, index in (
        ("batch_result_keys_page", "batch_result_keys_sentiment_idx"),
        ("batch_results_page", "batch_results_pkey"),
    ):
        plan = db.execute("EXPLAIN (FORMAT JSON) " + q(name), params).fetchone()[0]
        text = json.dumps(plan)
        assert index in text and '"Sort"' not in text and '"Seq Scan"' not in text, text
        partitions = {p.rsplit("_p", 1)[1] for p in re.findall(r'"Relation Name": "(batch_\w+)"', text)}
        assert len(partitions) == 1, text  # every table read in one partition of the batch's range


def test_csv_export_round_trips_and_defuses_formulas(client, scored_batch):
    pages = client.get(f"/batch/{scored_batch}/results?per_page=1000").get_json()["results"]
    response = client.get(f"/batch/{scored_batch}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{scored_batch}-results.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert list(rows[0]) == ["id", "text", "sentiment", "score", "compound", "pos", "neu", "neg", "error"]
    assert len(rows) == 700
    for row, page_row in zip(rows, pages, strict=True):
        expected = page_row["text"]
        if expected[0] in "=+-@\t\r":
            expected = "'" + expected
        assert row["text"] == expected
        assert row["sentiment"] == page_row["sentiment"]
        assert float(row["compound"]) == page_row["compound"]
    assert rows[3]["text"].startswith("'=HYPERLINK") and rows[4]["text"].startswith("'+1")
    assert rows[5]["text"] == "'-bad\ttabs" and rows[6]["text"].startswith("'@")
    assert rows[7]["id"] == "'=1+1"
    assert rows[4]["text"] == "'" + '+1 "great", she said,\nthen left'


def test_ndjson_export(client, scored_batch):
    response = client.get(f"/batch/{scored_batch}/results.ndjson")
    assert response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == 700
    first = json.loads(lines[0])
    assert set(first) == {"id", "text", "sentiment", "score", "compound", "pos", "neu", "neg", "error"}
    assert json.loads(lines[4])["text"] == '+1 "great", she said,\nthen left'  # JSON needs no defusing


def test_exports_need_a_finished_batch(client, upload):
    batch_id = upload(make_csv(["good"]))["batch_id"]
    assert client.get(f"/batch/{batch_id}/results.csv").status_code == 409
    assert client.get(f"/batch/{batch_id}/results.ndjson").status_code == 409


def test_batch_list_newest_first_with_status_filter(client, upload, db):
    ids = [upload(make_csv([f"text {i}"]))["batch_id"] for i in range(7)]
    score_everything(db)
    extra = upload(make_csv(["still waiting"]))["batch_id"]
    collected, url = [], "/batches?per_page=3"
    while url:
        response = client.get(url)
        collected += [b["batch_id"] for b in response.get_json()["batches"]]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert collected == [extra, *reversed(ids)]
    body = client.get("/batches?status=processing").get_json()
    assert [b["batch_id"] for b in body["batches"]] == [extra]
    assert client.get("/batches?status=bogus").status_code == 400
    assert client.get("/batches?after=tampered").status_code == 400


#: An API_TOKEN of the 32 characters it needs at least.
ADMIN_TOKEN = "s3cret-" + "x" * 25


def test_api_token(database_url):
    app = create_app({"database_url": database_url, "api_token": ADMIN_TOKEN})
    try:
        client = app.test_client()
        response = client.get("/batches")
        assert response.status_code == 401 and response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/batches", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/batches", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        assert (
            client.post("/batch/upload", data=b"id,text\n1,a\n", content_type="text/csv").status_code == 401
        )
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        # A browser is sent to /login, gives the token once, then carries it in a cookie.
        browser = app.test_client()
        page = browser.get("/batches?status=completed", headers={"Accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 303
        assert page.headers["Location"] == "/login?next=%2Fbatches%3Fstatus%3Dcompleted"
        form = browser.get(page.headers["Location"])
        assert form.status_code == 200 and b'<label for="token">' in form.data
        wrong = browser.post("/login", data={"token": "nope", "next": "/batches"})
        assert wrong.status_code == 401 and b"not right" in wrong.data
        assert (
            browser.post("/login", data={"token": ADMIN_TOKEN, "next": "//evil.example"}).headers["Location"]
            == "/"
        )
        signed_in = browser.post("/login", data={"token": ADMIN_TOKEN, "next": "/batches?status=completed"})
        assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/batches?status=completed"
        cookie = signed_in.headers["Set-Cookie"]
        assert cookie.startswith("sentiment_session=") and ADMIN_TOKEN not in cookie  # an id, not the token
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get("/batches").status_code == 200
    finally:
        app.extensions["db_pool"].close()


def test_json_request_log_line(client, caplog):
    from core.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="webapp.request_log"):
        client.get("/batch/batch-" + "0" * 32)
    record = next(r for r in caplog.records if r.name == "webapp.request_log")
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 404 and line["method"] == "GET" and line["batch"] == "batch-" + "0" * 32
    assert line["duration_ms"] >= 0 and line["level"] == "INFO"
