"""Every error a client can cause: its code, its problem+json body, and no leftovers."""

from __future__ import annotations

import io

import pytest

from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import assert_nothing_written, assert_problem, post_file


@pytest.mark.parametrize(
    ("body", "slug", "needle"),
    [
        (b"", "empty-file", "empty"),
        (b"id,text\n", "no-data-rows", "no data rows"),
        (b"id,body\n1,hello\n", "missing-text-column", "Line 1"),
        (b"id,text\n1,,\n2,bad,extra\n", "no-valid-rows", "line 3"),
        (b"id,text\n1,   \n", "no-valid-rows", "line 2: the text is empty"),
        (b"id,text\n1,caf\xe9\n", "not-utf8", "UTF-8"),
        (b'id,text\n1,"never closed\n', "invalid-csv", "Line"),
        (b"id,text\n1,a\x00b\n", "no-valid-rows", "line 2"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "binary-file", "PNG"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "invalid-gzip", "gzip"),  # inflated, and corrupt
        (b"PK\x03\x04" + bytes(range(256)) * 4, "binary-file", "ZIP"),
        (b"id,text\n" + b"\x00" * 500, "binary-file", "NUL"),
        (b"ID, Text ,TEXT\n1,a,b\n", "duplicate-column", "Line 1"),
        (b"i love it,5 stars\n", "missing-text-column", "no header row"),
    ],
)
def test_a_bad_file_is_rejected_and_leaves_nothing(client, db, body, slug, needle):
    problem = assert_problem(post_file(client, body), 400, slug)
    assert needle in problem["detail"]
    assert_nothing_written(db)


def test_late_problems_roll_back_the_whole_copy(client, db):
    good = make_csv(sample_texts(5_000))
    late_quote = good + b'late,"never closed\n'
    problem = assert_problem(post_file(client, late_quote), 400, "invalid-csv")
    assert problem["detail"].startswith("Line ")
    late_row = good + b"late,row,with,too,many\n"
    problem = assert_problem(post_file(client, late_row, query="?strict=true"), 400, "invalid-row")
    assert "strict" in problem["detail"] and problem["detail"].startswith("Line ")
    assert_nothing_written(db)


def test_two_files_in_one_form(client, db):
    response = client.post(
        "/batch/upload",
        data={"file": [(io.BytesIO(b"id,text\n1,good\n"), "a.csv"), (io.BytesIO(b"id,text\n"), "b.csv")]},
        content_type="multipart/form-data",
    )
    assert_problem(response, 400, "several-files")
    assert_nothing_written(db)


@pytest.mark.parametrize(
    ("query", "slug"), [("?strict=maybe", "invalid-parameter"), ("?encoding=klingon", "unknown-encoding")]
)
def test_bad_upload_parameters(client, db, query, slug):
    response = client.post(f"/batch/upload{query}", data=b"id,text\n1,a\n", content_type="text/csv")
    assert_problem(response, 400, slug)
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


def test_limits_are_413(database_url, db):
    from webapp import create_app

    app = create_app({"database_url": database_url, "max_upload_bytes": 10_000, "max_rows": 100})
    try:
        client = app.test_client()
        body = make_csv(sample_texts(2_000))
        # Declared too large: refused before reading.
        assert_problem(
            client.post("/batch/upload", data=body, content_type="text/csv"), 413, "upload-too-large"
        )
        # Too large only once read (no Content-Length, as with chunked transfer under gunicorn).
        response = client.post(
            "/batch/upload",
            input_stream=io.BytesIO(body),
            headers={"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert_problem(response, 413, "upload-too-large")
        rows = make_csv(["ok"] * 101)
        assert_problem(post_file(client, rows), 413, "too-many-rows")
        assert post_file(client, make_csv(["ok"] * 100)).status_code == 202
    finally:
        app.extensions["db_pool"].close()
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1


def test_unknown_batch_route_and_method(client):
    assert_problem(client.get("/batch/batch-" + "0" * 32), 404, "batch-not-found")
    assert_problem(client.get("/batch/nope"), 404, "batch-not-found")
    assert_problem(client.get("/batch/nope/results"), 404, "batch-not-found")
    assert_problem(client.get("/no/such/route"), 404, "not-found")
    response = client.put("/batch/upload")
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("query", ["sentiment=positive", "order=compound", "order=-compound"])
def test_sorted_or_filtered_results_of_unfinished_batch_are_409(client, query):
    created = post_file(client, make_csv(["good", "bad"])).get_json()
    answer = client.get(f"/batch/{created['batch_id']}/results?{query}")
    body = assert_problem(answer, 409, "batch-not-completed")
    assert body["status_of_batch"] == "processing"
    assert "File-order pages and the events feed" in body["detail"]


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
    app = create_app({"database_url": url, "migrate_on_start": True, "db_pool_timeout": 1.0})
    try:
        response = app.test_client().get("/batch/batch-" + "0" * 32)
        body = assert_problem(response, 503, "database-unavailable")
        assert response.headers["Retry-After"] == "5"
        assert "database" in body["detail"]
    finally:
        app.extensions["db_pool"].close(timeout=1)


def test_an_encoding_name_with_a_nul_is_a_400(client, db):
    response = client.post(
        "/batch/upload?encoding=%00",
        data=b"id,text\n1,good\n",
        content_type="text/csv",
    )
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
