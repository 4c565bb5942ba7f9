"""Uploads that name their columns: text_column and id_column, and the columns kept with each row."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.batches.rows import EXPORT_COLUMNS
from tests.integration.helpers import (
    assert_nothing_written,
    assert_problem,
    post_file,
    score_everything,
    upload_file,
)

HELP_DESK = (
    b"ticket_id,created,product,channel,body\n"
    b"T-1,2026-01-02,Router,email,The router keeps dropping and support never answered.\n"
    b'T-2,2026-01-03,Modem,chat,"Great help, thank you so much!"\n'
)


def _pages(client, batch_id: str) -> list[dict]:
    return client.get(f"/batch/{batch_id}/results?per_page=1000").get_json()["results"]


@pytest.mark.parametrize("how", ["query", "form"])
def test_named_columns_give_the_text_and_the_id(client, db, how):
    if how == "query":
        created = upload_file(client, HELP_DESK, query="?text_column=body&id_column=ticket_id")
    else:
        created = upload_file(client, HELP_DESK, fields={"text_column": "Body", "id_column": " TICKET_ID "})
    assert created["total_count"] == 2 and created["invalid_count"] == 0
    score_everything(db)
    rows = _pages(client, created["batch_id"])
    assert [(r["id"], r["text"]) for r in rows] == [
        ("T-1", "The router keeps dropping and support never answered."),
        ("T-2", "Great help, thank you so much!"),
    ]


def test_without_an_id_column_the_line_is_the_id(client, db):
    created = upload_file(client, HELP_DESK, query="?text_column=body")
    score_everything(db)
    assert [r["id"] for r in _pages(client, created["batch_id"])] == ["2", "3"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("?text_column=message", "'message' (text_column)"),
        ("?text_column=body&id_column=ref", "'ref' (id_column)"),
    ],
)
def test_a_missing_named_column_is_a_400_listing_the_columns(client, db, query, needle):
    problem = assert_problem(post_file(client, HELP_DESK, query=query), 400, "missing-column")
    assert needle in problem["detail"]
    assert "'ticket_id', 'created', 'product', 'channel', 'body'" in problem["detail"]
    assert_nothing_written(db)


@pytest.mark.parametrize(
    "query", ["?text_column=", "?text_column=body&id_column=BODY", "?text_column=a&text_column=b"]
)
def test_bad_column_options_are_a_400(client, db, query):
    assert_problem(post_file(client, HELP_DESK, query=query), 400, "invalid-parameter")
    assert_nothing_written(db)


def _help_desk(rows: list[tuple[str, str, str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["ticket_id", "created", "product", "channel", "body"])
    writer.writerows(rows)
    return out.getvalue().encode()


TICKETS = [
    ("T-1", "2026-01-02", "Router X1", "email", "The router keeps dropping and support never answered."),
    ("T-2", "2026-01-03", 'Modem "Pro", 2nd gen', "chat", "Great help, thank you so much!"),
    ("T-3", "", "Café ☕ plan", "phone\nline 2", "It works, I guess."),
    ("T-4", "2026-01-05", "=HYPERLINK(1)", "  web  ", "Terrible. Awful. Never again."),
]


def test_every_kept_field_comes_back_on_pages_and_in_both_exports(client, db):
    created = upload_file(client, _help_desk(TICKETS), query="?text_column=body&id_column=ticket_id")
    assert created["total_count"] == 4 and created["invalid_count"] == 0
    score_everything(db)
    names = ["created", "product", "channel"]
    expected = [dict(zip(names, ticket[1:4], strict=True)) for ticket in TICKETS]

    rows = _pages(client, created["batch_id"])
    assert [r["id"] for r in rows] == ["T-1", "T-2", "T-3", "T-4"]
    assert [r["fields"] for r in rows] == expected
    assert [list(r["fields"]) for r in rows] == [names] * 4  # in file order
    two = client.get(f"/batch/{created['batch_id']}/results?per_page=2").get_json()
    assert [r["fields"] for r in two["results"]] == expected[:2]

    exported = client.get(f"/batch/{created['batch_id']}/results.csv").get_data()
    table = list(csv.reader(io.StringIO(exported.decode(), newline="")))
    assert table[0] == [*EXPORT_COLUMNS, *names]
    assert [row[: len(EXPORT_COLUMNS)][0] for row in table[1:]] == ["T-1", "T-2", "T-3", "T-4"]
    kept = [row[len(EXPORT_COLUMNS) :] for row in table[1:]]
    defused = [[("'" + v if v[:1] in "=+-@\t\r" and v else v) for v in ticket[1:4]] for ticket in TICKETS]
    assert kept == defused
    assert kept[3][1] == "'=HYPERLINK(1)"

    lines = client.get(f"/batch/{created['batch_id']}/results.ndjson").get_data().decode().splitlines()
    assert [json.loads(line)["fields"] for line in lines] == expected


def test_a_file_with_only_the_text_and_the_id_keeps_no_fields(client, db):
    created = upload_file(client, b"id,text\n1,good\n")
    score_everything(db)
    assert "fields" not in _pages(client, created["batch_id"])[0]
    exported = client.get(f"/batch/{created['batch_id']}/results.csv").get_data().decode()
    assert exported.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    internal = db.execute("SELECT id FROM batches WHERE public_id = %s", (created["batch_id"],)).fetchone()[0]
    assert db.execute("SELECT fields FROM batch_inputs WHERE batch_id = %s", (internal,)).fetchone() == (
        None,
    )


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        (b"id,text," + b",".join(b"c%d" % n for n in range(51)) + b"\n1,a\n", "too-many-columns"),
        (b"id,text,product\n1,good,ok\n2,fine," + b"p" * 2_001 + b"\n", "kept-column-too-long"),
    ],
)
def test_past_the_kept_columns_caps_is_a_400_and_nothing_is_stored(client, db, body, slug):
    assert_problem(post_file(client, body), 400, slug)
    assert_nothing_written(db)


def test_kept_fields_come_back_from_the_python_parser_and_in_every_order(client, db):
    data = _help_desk(TICKETS).decode().replace("☕", "").encode("latin-1")
    created = upload_file(client, data, query="?text_column=body&id_column=ticket_id&encoding=latin-1")
    score_everything(db)
    batch_id = created["batch_id"]
    expected = {t[0]: {"created": t[1], "product": t[2].replace("☕", ""), "channel": t[3]} for t in TICKETS}
    for query in ("", "&order=compound", "&sentiment=negative", "&order=-compound&sentiment=positive"):
        rows = client.get(f"/batch/{batch_id}/results?per_page=10{query}").get_json()["results"]
        assert rows and all(r["fields"] == expected[r["id"]] for r in rows), query


def test_a_retry_naming_other_columns_is_another_upload(client, db):
    key = {"Idempotency-Key": "help-desk-1"}
    first = upload_file(client, HELP_DESK, query="?text_column=body", headers=key)
    again = post_file(client, HELP_DESK, query="?text_column=body", headers=key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["batch_id"] == first["batch_id"]
    assert_problem(post_file(client, HELP_DESK, query="?text_column=product", headers=key), 422)


def test_blank_form_fields_for_the_columns_are_not_given(client, db):
    """The upload page's text fields, left blank, arrive empty: the defaults apply (an empty
    query parameter stays a 400, test_bad_column_options_are_a_400)."""
    fields = {"text_column": "", "id_column": "  ", "sheet": ""}
    created = upload_file(client, b"id,text\nr1,lovely\n", fields=fields)
    score_everything(db)
    assert [(r["id"], r["text"]) for r in _pages(client, created["batch_id"])] == [("r1", "lovely")]
    named = upload_file(
        client, HELP_DESK, fields={"text_column": "body", "id_column": ""}, query="?id_column=ticket_id"
    )
    score_everything(db)
    assert [r["id"] for r in _pages(client, named["batch_id"])] == ["T-1", "T-2"]


@pytest.mark.parametrize("name", ["text_column", "id_column"])
def test_a_column_named_after_the_file_is_refused(client, db, name):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="tickets.csv"\r\n\r\n'
        + HELP_DESK
        + f'\r\n--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\nbody\r\n--b--\r\n'.encode()
    )
    answer = client.post("/batch/upload", data=body, content_type="multipart/form-data; boundary=b")
    assert name in assert_problem(answer, 400, "option-after-file")["detail"]
    assert_nothing_written(db)
