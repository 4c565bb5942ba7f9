"""Uploads that name their columns: text_column and id_column, and the columns kept with each row."""

from __future__ import annotations

import pytest

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
