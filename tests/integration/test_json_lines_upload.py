"""JSON Lines uploads: the same rows as a CSV give the same results and the same kept fields; bad
lines are set aside by line number; whole-file refusals store nothing."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.batches.rows import EXPORT_COLUMNS
from tests.helpers import sample_texts
from tests.integration.helpers import (
    PROBLEM,
    assert_nothing_written,
    assert_problem,
    post_file,
    score_everything,
    table_counts,
    upload_file,
)
from webapp import create_app

TEXTS = sample_texts(120, seed=31)


def tickets() -> list[dict]:
    """Help-desk rows with a kept key missing from some lines and new keys past the first line."""
    rows = []
    for index, text in enumerate(TEXTS, start=1):
        row: dict = {"ticket": f"T-{index}", "product": f"Router {index % 3}", "body": text}
        if index % 4:
            row["channel"] = "email" if index % 2 else "chat"
        if index > 30:
            row["rating"] = index % 5 + 0.5
        rows.append(row)
    return rows


def as_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def as_csv(rows: list[dict], columns: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([str(row.get(column, "")) for column in columns] for row in rows)
    return out.getvalue().encode()


def everything(client, batch_id: str) -> list[dict]:
    """Every result of the batch, in file order, page after page."""
    rows, after = [], None
    while True:
        query = f"?per_page=50&after={after}" if after else "?per_page=50"
        page = client.get(f"/batch/{batch_id}/results{query}").get_json()
        rows += page["results"]
        after = page.get("next_cursor")
        if not page["results"] or after is None:
            return rows


def download(client, url: str) -> str:
    """A download's text, its response closed (an export holds a slot of MAX_EXPORTS until then)."""
    with client.get(url) as response:
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)


def scored(client, db, answer: dict) -> dict:
    score_everything(db)
    return client.get(f"/batch/{answer['batch_id']}").get_json()


COLUMNS = "?text_column=body&id_column=ticket"


def test_a_json_lines_file_scores_and_keeps_its_keys_as_the_same_rows_in_csv(client, db):
    rows = tickets()
    names = ["product", "channel", "rating"]  # in the order the keys first appear
    from_csv = scored(
        client, db, upload_file(client, as_csv(rows, ["ticket", *names, "body"]), query=COLUMNS)
    )
    answer = upload_file(client, as_jsonl(rows), "tickets.jsonl", query=COLUMNS)
    assert answer["total_count"] == len(rows) and answer["invalid_count"] == 0
    from_jsonl = scored(client, db, answer)
    for key in ("status", "total_count", "invalid_count", "processed_count", "summary"):
        assert from_jsonl[key] == from_csv[key], key

    csv_rows = everything(client, from_csv["batch_id"])
    jsonl_rows = everything(client, from_jsonl["batch_id"])
    assert len(jsonl_rows) == len(rows)
    # The same rows; a JSON Lines row's line is its line (a CSV's text may span several).
    assert [row.pop("line") for row in jsonl_rows] == list(range(1, len(rows) + 1))
    assert jsonl_rows == [{k: v for k, v in row.items() if k != "line"} for row in csv_rows]
    # A key a line lacks is empty; rows read before 'rating' first appeared have it too.
    assert jsonl_rows[0]["fields"] == {"product": "Router 1", "channel": "email", "rating": ""}
    assert jsonl_rows[3]["fields"] == {"product": "Router 1", "channel": "", "rating": ""}
    assert jsonl_rows[30]["fields"] == {"product": "Router 1", "channel": "email", "rating": "1.5"}
    assert [list(row["fields"]) for row in jsonl_rows] == [names] * len(rows)

    batch_id = from_jsonl["batch_id"]
    exported = download(client, f"/batch/{batch_id}/results.csv")
    table = list(csv.reader(io.StringIO(exported, newline="")))
    assert table[0] == [*EXPORT_COLUMNS, *names]
    assert [line[len(EXPORT_COLUMNS) :] for line in table[1:]] == [
        [str(row.get(name, "")) for name in names] for row in rows
    ]
    assert exported == download(client, f"/batch/{from_csv['batch_id']}/results.csv")
    lines = download(client, f"/batch/{batch_id}/results.ndjson").split("\n")[:-1]
    assert [json.loads(line)["fields"] for line in lines] == [row["fields"] for row in jsonl_rows]


@pytest.mark.parametrize(
    ("how", "options"),
    [
        ("raw x-ndjson", {"content_type": "application/x-ndjson"}),
        ("raw jsonl", {"content_type": "application/jsonl; charset=utf-8"}),
        ("raw gzip", {"content_type": "application/x-ndjson", "headers": {"Content-Encoding": "gzip"}}),
    ],
)
def test_a_raw_body_of_json_lines_by_its_media_type(client, db, how, options):
    body = b'{"id": 1, "text": "I love it"}\n{"id": 2, "text": "I hate it"}\n'
    if "gzip" in how:
        body = gzip.compress(body)
    answer = client.post("/batch/upload", data=body, **options)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    rows = everything(client, scored(client, db, answer.get_json())["batch_id"])
    assert [(r["id"], r["sentiment"]) for r in rows] == [("1", "positive"), ("2", "negative")]
    assert all("fields" not in r for r in rows)


@pytest.mark.parametrize("name", ["reviews.ndjson", "reviews.jsonl.gz"])
def test_a_form_part_named_ndjson_or_jsonl_gz(client, db, name):
    body = b'{"text": "Great", "stars": 5}\n'
    if name.endswith(".gz"):
        body = gzip.compress(body)
    answer = upload_file(client, body, name)
    row = everything(client, scored(client, db, answer)["batch_id"])[0]
    assert (row["id"], row["fields"]) == ("1", {"stars": "5"})


BAD_LINES = b"\n".join(
    [
        b'{"id": "a", "text": "What a wonderful day"}',
        b'["not", "an", "object"]',
        b'{"id": "c", "body": "no text key"}',
        b"   ",
        b'{"id": "d", "text": "unterminated',
        b'{"id": "e", "text": 42}',
        b'{"id": "f", "text": "Horrible service", "note": "kept"}',
        b'{"id": "g", "Text": "one", "text": "two"}',
        b"NaN",
        b"",
    ]
)


def test_bad_lines_are_set_aside_by_line_number_and_the_others_are_scored(client, db):
    answer = upload_file(client, BAD_LINES, "mixed.jsonl")
    assert answer["total_count"] == 8 and answer["invalid_count"] == 6
    batch = scored(client, db, answer)
    assert batch["status"] == "completed" and batch["processed_count"] == 2
    errors = client.get(f"/batch/{answer['batch_id']}/errors").get_json()["errors"]
    assert [(e["line"], e["id"], e["reason"]) for e in errors] == [
        (2, "2", "not_an_object"),
        (3, "c", "missing_text"),
        (5, "5", "invalid_json"),
        (6, "e", "wrong_type"),
        (8, "g", "duplicate_key"),
        (9, "9", "invalid_json"),
    ]
    assert "column" in errors[2]["detail"] and "'text'" in errors[1]["detail"]
    rows = everything(client, answer["batch_id"])
    assert [(r["id"], r["line"], r["sentiment"], r.get("fields")) for r in rows] == [
        # Line 3's 'body' is a key like any other: kept, empty where a line lacks it.
        ("a", 1, "positive", {"body": "", "note": ""}),
        ("f", 7, "negative", {"body": "", "note": "kept"}),
    ]


def test_strict_refuses_the_file_at_its_first_bad_line(client, db):
    problem = assert_problem(
        post_file(client, BAD_LINES, "mixed.jsonl", query="?strict=true"), 400, "invalid-row"
    )
    assert problem["detail"].startswith("Line 2: the line is an array")
    assert_nothing_written(db)


@pytest.mark.parametrize(
    ("body", "query", "status", "slug", "needle"),
    [
        (b"", "", 400, "empty-file", "JSON object"),
        (b"\n  \n\n", "", 400, "empty-file", "JSON object"),
        (
            b'{"id": 1, "body": "a"}\n{"id": 2, "note": "b"}\n',
            "",
            400,
            "missing-text-column",
            "'body', 'note'",
        ),
        (b'{"id": 1, "text": "a"}\n', "?text_column=body", 400, "missing-column", "'id', 'text'"),
        (b'{"text": "a"}\n', "?id_column=ticket", 400, "missing-column", "'ticket' (id_column)"),
        (b"not json\n[1]\n", "", 400, "no-valid-rows", "line 1: the line is not valid JSON"),
        (b'{"text": "a", "big": "' + b"x" * 2_001 + b'"}\n', "", 400, "kept-column-too-long", "'big'"),
        (
            b'{"text": "a"}\n{"text": "b", ' + b", ".join(b'"k%d": 1' % n for n in range(51)) + b"}\n",
            "",
            400,
            "too-many-columns",
            "Line 2",
        ),
        (b'{"text": "a", "' + b"k" * 256 + b'": 1}\n', "", 400, "invalid-column-name", "Line 1"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "", 400, "binary-file", "not a JSON Lines text file"),
        (b"PK\x03\x04" + bytes(200), "", 400, "binary-file", "ZIP archive"),
        (bytes(4000), "", 400, "binary-file", "NUL bytes"),
        (b'{"text": "caf\xe9"}\n', "", 400, "not-utf8", "Line 1"),
    ],
    ids=[
        "empty",
        "blank-lines-only",
        "no-text-key",
        "no-text-column",
        "no-id-column",
        "no-valid-line",
        "kept-too-long",
        "too-many-keys",
        "key-too-long",
        "png",
        "zip",
        "nuls",
        "not-utf8",
    ],
)
def test_a_json_lines_file_refused_whole_stores_nothing(client, db, body, query, status, slug, needle):
    before = table_counts(db)
    problem = assert_problem(post_file(client, body, "x.jsonl", query=query), status, slug)
    assert needle in problem["detail"]
    assert_nothing_written(db, before)


@pytest.fixture
def small_client(database_url):
    """The app with MAX_UPLOAD_BYTES 100,000 and MAX_ROWS 1,000."""
    app = create_app(
        {
            "database_url": database_url,
            "migrate_on_start": False,
            "max_upload_bytes": 100_000,
            "max_rows": 1_000,
        }
    )
    yield app.test_client()
    app.extensions["db_pool"].close()


def test_the_limits_of_a_csv_apply(small_client, db):
    many = b"".join(b'{"text": "fine %d"}\n' % n for n in range(1_001))
    assert_problem(post_file(small_client, many, "x.jsonl"), 413, "too-many-rows")
    big = b'{"text": "fine"}\n' * 6_000
    assert len(big) > 100_000
    assert_problem(post_file(small_client, big, "x.jsonl"), 413, "upload-too-large")
    bomb = gzip.compress(b'{"text": "fine"}' + b" " * 2_000_000 + b"\n")
    assert len(bomb) < 100_000
    problem = assert_problem(post_file(small_client, bomb, "x.jsonl.gz"), 413)
    assert "inflates" in problem["detail"], problem
    assert_nothing_written(db)


def test_refusals_over_real_gunicorn(serve, db):
    web = serve(MAX_UPLOAD_BYTES="100000")
    before = table_counts(db)
    for data, status, slug in [
        (b'{"text": "fine"}\n' * 10_000, 413, "upload-too-large"),
        (b"%PDF-1.7\n" + bytes(300), 400, "binary-file"),
        (b'{"id": 1, "body": "no text"}\n', 400, "missing-text-column"),
    ]:
        answer = requests.post(
            f"{web.base}/batch/upload",
            data=data,
            headers={"Content-Type": "application/x-ndjson"},
            timeout=60,
        )
        assert answer.status_code == status, answer.text[:300]
        assert answer.headers["Content-Type"] == PROBLEM
        assert answer.json()["type"] == f"/problems/{slug}"
    assert_nothing_written(db, before)
    good = requests.post(
        f"{web.base}/batch/upload",
        files={"file": ("reviews.jsonl", b'{"id": "x", "text": "Lovely", "lang": "en"}\n', "text/plain")},
        timeout=60,
    )
    assert good.status_code == 202 and good.json()["total_count"] == 1, good.text


def test_an_unsupported_media_type_names_json_lines(client, db):
    problem = assert_problem(client.post("/batch/upload", data=b"{}", content_type="application/json"), 415)
    assert "application/x-ndjson" in problem["detail"]
    assert_nothing_written(db)


def test_sheet_on_json_lines_is_a_400(client, db):
    answer = post_file(client, b'{"text": "a"}\n', "x.jsonl", query="?sheet=S")
    assert "read as JSON Lines" in assert_problem(answer, 400, "invalid-parameter")["detail"]
    assert_nothing_written(db)


KEYS = ["id", "ID", "text", "Text", " text ", "lang", "LANG", "n", "", "k\u00e9y", "nested"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["good", "I love it", "awful", "", "  ", "a\x00b", "x" * 301, "😀 \u2028 é", "\ud800"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
RAW_LINES = [
    "",
    "   ",
    "not json",
    "[1, 2]",
    "NaN",
    '{"text": "a"',
    '{"text": "tab\there"}',
    '{"text": "a"} x',
]


@st.composite
def json_lines_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 3)) == 0:
            lines.append(draw(st.sampled_from(RAW_LINES)))
        else:
            found = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
            lines.append(json.dumps(found, ensure_ascii=draw(st.booleans())))
    text = "".join(line + draw(st.sampled_from(["\n", "\r\n"])) for line in lines)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture
def short_texts_app(database_url):
    app = create_app({"database_url": database_url, "migrate_on_start": False, "max_text_chars": 300})
    yield app
    app.extensions["db_pool"].close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=json_lines_bytes(), multipart=st.booleans(), strict=st.booleans())
def test_any_json_lines_upload_is_accepted_exactly_or_refused_cleanly(
    short_texts_app, db, data, multipart, strict
):
    client = short_texts_app.test_client()
    before = table_counts(db)
    query = "?strict=true" if strict else ""
    if multipart:
        response = post_file(client, data, "x.jsonl", query=query)
    else:
        response = client.post(f"/batch/upload{query}", data=data, content_type="application/x-ndjson")
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code != 202:
        assert_problem(response, response.status_code)
        assert_nothing_written(db, before=before)
        return
    created = response.get_json()
    assert created["invalid_count"] < created["total_count"]
    score_everything(db)
    status = client.get(f"/batch/{created['batch_id']}").get_json()
    assert status["processed_count"] + status["invalid_count"] == status["total_count"]
    rows = everything(client, created["batch_id"])
    assert len(rows) == status["processed_count"]
    names = {tuple(row["fields"]) for row in rows if "fields" in row}
    assert len(names) <= 1  # every row has every kept column, in one order
    if names:
        assert len(rows) == sum(1 for row in rows if "fields" in row)


def test_json_lines_named_csv_is_refused_with_a_hint(client, db):
    answer = post_file(client, b'{"id": 1, "text": "I love it"}\n', "reviews.csv")
    assert "named *.jsonl" in assert_problem(answer, 400, "missing-text-column")["detail"]
    assert_nothing_written(db)


BROWSER = {"Accept": "text/html"}


def test_the_upload_page_takes_json_lines(client, db):
    html = client.get("/", headers=BROWSER).get_data(as_text=True)
    accept = html.split('accept="', 1)[1].split('"', 1)[0].split(",")
    assert {".jsonl", ".ndjson", "application/x-ndjson", ".csv", ".xlsx"} <= set(accept)
    form = {"file": (io.BytesIO(b'{"id": "r1", "text": "I love it", "lang": "en"}\n'), "reviews.jsonl")}
    answer = client.post("/batch/upload", data=form, content_type="multipart/form-data", headers=BROWSER)
    assert answer.status_code == 303
    refused = {"file": (io.BytesIO(b'{"id": "r1", "body": "no text"}\n'), "reviews.jsonl")}
    again = client.post("/batch/upload", data=refused, content_type="multipart/form-data", headers=BROWSER)
    assert again.status_code == 400 and again.mimetype == "text/html"
    assert "No line has a &#39;text&#39; key" in again.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
