"""Labels and expiry given at upload: metadata as a form field or a query
parameter, returned on every batch object, filterable, shown on the page; expires_after giving
expires_at, honoured by purging; everything else a 400 that says what is wrong."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from core import batches
from tests.helpers import make_csv
from tests.integration.helpers import score_everything

CSV = make_csv(["good", "bad"])


def _form(client, fields: dict[str, str], data: bytes = CSV, query: str = ""):  # type: ignore[no-untyped-def]
    return client.post(
        f"/batch/upload{query}",
        data={**fields, "file": (io.BytesIO(data), "x.csv")},
        content_type="multipart/form-data",
    )


def test_metadata_as_a_form_field_or_a_query_parameter_comes_back_everywhere(client):
    labels = {"project": "q3", "owner": "ana", "émoji": "✓"}
    sent = _form(client, {"metadata": json.dumps(labels)})
    assert sent.status_code == 202, sent.get_json()
    assert sent.get_json()["metadata"] == labels
    raw = client.post(
        "/batch/upload?metadata=" + json.dumps({"project": "q4"}), data=CSV, content_type="text/csv"
    )
    assert raw.status_code == 202 and raw.get_json()["metadata"] == {"project": "q4"}
    plain = _form(client, {})
    assert plain.get_json()["metadata"] == {}
    batch_id = sent.get_json()["batch_id"]
    assert client.get(f"/batch/{batch_id}").get_json()["metadata"] == labels
    listed = client.get("/batches").get_json()["batches"]
    assert {b["batch_id"]: b["metadata"] for b in listed}[batch_id] == labels
    page = client.get(f"/batch/{batch_id}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "project" in page and "q3" in page and "ana" in page


def test_batches_filter_by_labels(client):
    ids = {}
    for name, labels in {
        "a": {"project": "q3", "team": "x"},
        "b": {"project": "q3"},
        "c": {"project": "q4", "team": "x"},
    }.items():
        ids[name] = _form(client, {"metadata": json.dumps(labels)}).get_json()["batch_id"]

    def listed(query: str) -> set[str]:
        answer = client.get(f"/batches?{query}")
        assert answer.status_code == 200, answer.get_json()
        return {b["batch_id"] for b in answer.get_json()["batches"]}

    assert listed("metadata[project]=q3") == {ids["a"], ids["b"]}
    assert listed("metadata[project]=q3&metadata[team]=x") == {ids["a"]}
    assert listed("metadata[team]=x") == {ids["a"], ids["c"]}
    assert listed("metadata[project]=nope") == set()
    # The filter holds across pages: the cursor is bound to it, and the next link keeps it.
    first = client.get("/batches?metadata[team]=x&per_page=1")
    assert "metadata%5Bteam%5D=x" in first.headers["Link"]
    cursor = first.get_json()["next_cursor"]
    rest = client.get(f"/batches?metadata[team]=x&per_page=1&after={cursor}").get_json()["batches"]
    assert len(rest) == 1 and rest[0]["batch_id"] != first.get_json()["batches"][0]["batch_id"]
    other = client.get(f"/batches?metadata[team]=y&per_page=1&after={cursor}")
    assert other.status_code == 400  # a cursor of one filter is refused for another


@pytest.mark.parametrize(
    "metadata, says",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"n": 1}', "must be a string"),
        ('{"": "x"}', "must be 1 to 64 characters"),
        (json.dumps({"k" * 65: "x"}), "must be 1 to 64 characters"),
        (json.dumps({"k": "v" * 513}), "at most 512"),
        (json.dumps({f"k{i}": "v" for i in range(17)}), "at most 16"),
        ('{"k": "a\\u0000b"}', "NUL"),
    ],
)
def test_bad_metadata_is_a_400_that_says_what_is_wrong(client, db, metadata, says):
    answer = _form(client, {"metadata": metadata})
    assert answer.status_code == 400
    problem = answer.get_json()
    assert problem["type"].endswith("invalid-metadata") and says in problem["detail"], problem
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_metadata_after_the_file_is_refused(client, db):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
        + CSV
        + b'\r\n--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{}\r\n--b--\r\n'
    )
    answer = client.post("/batch/upload", data=body, content_type="multipart/form-data; boundary=b")
    assert answer.status_code == 400 and answer.get_json()["type"].endswith("option-after-file")
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_label_filters_that_cannot_match_are_a_400(client):
    assert client.get("/batches?metadata[" + "k" * 65 + "]=x").status_code == 400
    assert client.get("/batches?metadata[k]=" + "v" * 513).status_code == 400


def test_expires_after_gives_expires_at_and_purging_honours_it(client, db):
    kept = _form(client, {}).get_json()["batch_id"]
    short = _form(client, {"expires_after": "2h"}).get_json()["batch_id"]
    long = _form(client, {}, query="?expires_after=30d").get_json()["batch_id"]
    assert client.get(f"/batch/{short}").get_json()["expires_at"] is None  # still processing
    score_everything(db)
    shown = {b: client.get(f"/batch/{b}").get_json() for b in (kept, short, long)}
    assert shown[kept]["expires_at"] is None  # no RESULTS_TTL, no expires_after: kept until deleted
    for batch_id, after in ((short, timedelta(hours=2)), (long, timedelta(days=30))):
        completed = shown[batch_id]["completed_at"]
        assert shown[batch_id]["expires_at"] == _iso_plus(completed, after)
    # Three hours later: the 2h batch goes, the others stay, even with RESULTS_TTL of one hour.
    db.execute("UPDATE batches SET completed_at = completed_at - interval '3 hours'")
    assert batches.purge(db, 0) == 1
    assert batches.purge(db, 3600) == 1  # RESULTS_TTL applies to the batch that gave no expiry ...
    deleted = {r[0] for r in db.execute("SELECT public_id FROM batches WHERE deleted_at IS NOT NULL")}
    assert deleted == {short, kept}  # ... and not to the one that asked for 30 days


def test_results_ttl_is_the_default_expiry_at_upload(database_url):
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False, "results_ttl_seconds": 7200.0})
    try:
        with app.test_client() as web:
            batch = _form(web, {}).get_json()
            own = _form(web, {"expires_after": "1d"}).get_json()
        with psycopg_connect(database_url) as conn:
            after = dict(conn.execute("SELECT public_id, expires_after FROM batches").fetchall())
        assert after[batch["batch_id"]] == timedelta(hours=2)
        assert after[own["batch_id"]] == timedelta(days=1)
    finally:
        app.extensions["db_pool"].close()


@pytest.mark.parametrize("value", ["0", "-1h", "soon", "inf", "nan", "3651d"])
def test_bad_expiry_is_a_400(client, db, value):
    answer = _form(client, {"expires_after": value})
    assert answer.status_code == 400 and answer.get_json()["type"].endswith("invalid-expiry"), (
        answer.get_json()
    )
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_an_expiry_past_max_expires_after_is_a_400(database_url):
    from webapp import create_app

    app = create_app(
        {"database_url": database_url, "migrate_on_start": False, "max_expires_after_seconds": 7 * 86400.0}
    )
    try:
        with app.test_client() as web:
            refused = _form(web, {"expires_after": "8d"})
            accepted = _form(web, {"expires_after": "7d"})
        assert refused.status_code == 400 and "from 1 second to 7 days" in refused.get_json()["detail"]
        assert accepted.status_code == 202
        with psycopg_connect(database_url) as conn:
            assert conn.execute("SELECT expires_after FROM batches").fetchall() == [(timedelta(days=7),)]
    finally:
        app.extensions["db_pool"].close()


@pytest.mark.parametrize("option", ["metadata", "expires_after", "encoding", "strict", "callback_url"])
def test_an_option_given_two_different_ways_is_a_400(client, db, option):
    values = {
        "metadata": ('{"a": "1"}', '{"a": "2"}'),
        "expires_after": ("1d", "2d"),
        "encoding": ("utf-8", "latin-1"),
        "strict": ("true", "false"),
        "callback_url": ("https://example.com/a", "https://example.com/b"),
    }[option]
    answer = _form(client, {option: values[1]}, query=f"?{option}={values[0]}")
    assert answer.status_code == 400, answer.get_json()
    assert option in answer.get_json()["detail"] and "give it once" in answer.get_json()["detail"]
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)
    same = _form(client, {"expires_after": "1d"}, query="?expires_after=1d")  # the same twice is fine
    assert same.status_code == 202, same.get_json()
    twice = _form(client, {}, query="?expires_after=1d&expires_after=3650d")
    assert twice.status_code == 400 and "more than once" in twice.get_json()["detail"]
    form_twice = client.post(
        "/batch/upload",
        data={"expires_after": ["1d", "2d"], "file": (io.BytesIO(CSV), "x.csv")},
        content_type="multipart/form-data",
    )
    assert form_twice.status_code == 400 and "given twice" in form_twice.get_json()["detail"]


def psycopg_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _iso_plus(text: str, delta: timedelta) -> str:
    from datetime import datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
    return moment.isoformat().replace("+00:00", "Z")
