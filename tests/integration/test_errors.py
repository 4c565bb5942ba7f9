"""Every error a client can cause: its code, its problem+json body, and no leftovers."""

from __future__ import annotations

import io

import pytest

from tests.helpers import make_csv, sample_texts

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if slug:
        assert body["type"] == f"/problems/{slug}"
    return body


def assert_nothing_written(db) -> None:
    for table in ("batches", "batch_rows", "chunks", "batch_results"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def post_file(client, data: bytes, **kwargs):
    return client.post(
        "/batch/upload",
        data={"file": (io.BytesIO(data), "x.csv")},
        content_type="multipart/form-data",
        **kwargs,
    )


@pytest.mark.parametrize(
    ("body", "slug", "needle"),
    [
        (b"", "empty-file", "empty"),
        (b"id,text\n", "no-data-rows", "no data rows"),
        (b"id,body\n1,hello\n", "missing-text-column", "Line 1"),
        (b"id,text\n1,good\n2,bad,extra\n", "wrong-field-count", "Line 3"),
        (b"id,text\n1,good\n2,   \n", "empty-text", "Line 3"),
        (b"id,text\n1,caf\xe9\n", "not-utf8", "UTF-8"),
        (b'id,text\n1,"never closed\n', "invalid-csv", "Line"),
        (b"id,text\n1,a\x00b\n", "nul-character", "Line 2"),
    ],
)
def test_bad_csv_is_rejected_and_leaves_nothing(client, db, body, slug, needle):
    problem = assert_problem(post_file(client, body), 400, slug)
    assert needle in problem["detail"]
    assert_nothing_written(db)


def test_bad_row_after_many_good_rows_rolls_back_the_copy(client, db):
    body = make_csv(sample_texts(5_000)) + b"late,row,with,too,many\n"
    problem = assert_problem(post_file(client, body), 400, "wrong-field-count")
    assert "Line" in problem["detail"]
    assert_nothing_written(db)


def test_missing_file_field(client, db):
    response = client.post("/batch/upload", data={"other": "x"}, content_type="multipart/form-data")
    assert_problem(response, 400, "missing-file")
    assert_nothing_written(db)


def test_multipart_without_boundary(client):
    response = client.post("/batch/upload", data=b"x", headers={"Content-Type": "multipart/form-data"})
    assert_problem(response, 400, "invalid-multipart")


def test_wrong_content_type(client, db):
    response = client.post("/batch/upload", data=b'{"a": 1}', content_type="application/json")
    assert_problem(response, 415, "unsupported-media-type")
    assert_problem(client.post("/batch/upload", data=b"id,text\n1,a\n"), 415)
    assert_nothing_written(db)


def test_upload_over_the_limit_is_413(database_url, db):
    from webapp import create_app

    app = create_app({"database_url": database_url, "max_upload_bytes": 10_000})
    try:
        response = app.test_client().post(
            "/batch/upload", data=make_csv(sample_texts(2_000)), content_type="text/csv"
        )
        assert_problem(response, 413, "upload-too-large")
    finally:
        app.extensions["db_pool"].close()
    assert_nothing_written(db)


def test_unknown_batch_route_and_method(client):
    assert_problem(client.get("/batch/batch-" + "0" * 32), 404, "batch-not-found")
    assert_problem(client.get("/batch/nope"), 404, "batch-not-found")
    assert_problem(client.get("/batch/nope/results"), 404, "batch-not-found")
    assert_problem(client.get("/no/such/route"), 404, "not-found")
    response = client.delete("/batch/upload")
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


def test_results_of_unfinished_batch_is_409(client):
    created = post_file(client, make_csv(["good", "bad"])).get_json()
    body = assert_problem(client.get(f"/batch/{created['batch_id']}/results"), 409, "batch-not-completed")
    assert body["status_of_batch"] == "processing"


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=",
        "per_page=0",
        "per_page=1001",
        "per_page=x",
        "page=99999999999999999999",
        "page=2147483647&per_page=1000",
        "after=garbage",
        "after=abc&page=2",
    ],
)
def test_bad_page_parameters_are_400(client, query):
    created = post_file(client, make_csv(["good"])).get_json()
    assert_problem(client.get(f"/batch/{created['batch_id']}/results?{query}"), 400, "invalid-parameter")


def test_database_down_is_503_with_retry_after(tmp_path):
    from webapp import create_app

    # A socket directory with no server behind it.
    url = f"postgresql://postgres@/none?host={tmp_path}&port=1&connect_timeout=1"
    app = create_app({"database_url": url, "migrate_on_start": True})
    app.extensions["db_pool"].timeout = 1.0
    try:
        response = app.test_client().get("/batch/batch-" + "0" * 32)
        body = assert_problem(response, 503, "database-unavailable")
        assert response.headers["Retry-After"] == "5"
        assert "database" in body["detail"]
    finally:
        app.extensions["db_pool"].close(timeout=1)
