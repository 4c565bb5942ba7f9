"""Property: whatever bytes a client uploads, the answer is 202 or a 4xx
problem, never a 5xx; a 202 batch completes with exact counts; a 4xx writes nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.helpers import (
    assert_nothing_written,
    assert_problem,
    post_file,
    score_everything,
    table_counts,
)
from webapp import create_app

MAX_TEXT_CHARS = 300

HEADERS = [
    "id,text",
    "text,id",
    " ID , Text ",
    "id,text,extra",
    "\ufeffid,text",
    "text",
    "id,body",
    "id,text,TEXT",
    "",
    '"id","text"',
]
FIELDS = [
    "good",
    "I love it",
    "awful, just awful",
    '"quoted, with comma"',
    '"say ""hi"""',
    '"multi\nline"',
    '"multi\r\nline"',
    "emoji 😀👍🏽",
    "مرحبا עברית",
    "",
    "   ",
    "a\x00b",
    "x" * (MAX_TEXT_CHARS + 1),
    '"never closed',
    "=1+1",
    "caf\u00e9",
    "\t",
    '"',
    "a,b,c",
]
ENDINGS = ["\n", "\r\n", "\r"]


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    header = draw(st.sampled_from(HEADERS))
    lines = [header]
    for _ in range(draw(st.integers(0, 12))):
        lines.append(",".join(draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3))))
    text = "".join(line + draw(st.sampled_from(ENDINGS)) for line in lines)
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "cp1252"])), "replace")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture
def strict_app(database_url):
    app = create_app({"database_url": database_url, "max_text_chars": MAX_TEXT_CHARS})
    yield app
    app.extensions["db_pool"].close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=csv_bytes(), multipart=st.booleans(), strict=st.booleans())
def test_any_upload_is_accepted_exactly_or_rejected_cleanly(strict_app, db, data, multipart, strict):
    client = strict_app.test_client()
    before = table_counts(db)
    query = "?strict=true" if strict else ""
    if multipart:
        response = post_file(client, data, query=query)
    else:
        response = client.post(f"/batch/upload{query}", data=data, content_type="text/csv")
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code != 202:
        assert 400 <= response.status_code < 500
        assert_problem(response, response.status_code)
        assert_nothing_written(db, before=before)
        return
    created = response.get_json()
    assert created["total_count"] >= 1 and created["invalid_count"] < created["total_count"]
    score_everything(db)
    status = client.get(f"/batch/{created['batch_id']}").get_json()
    assert status["status"] == "completed"
    assert status["processed_count"] + status["invalid_count"] == status["total_count"]
    assert sum(status["summary"][s] for s in ("positive", "negative", "neutral")) == status["processed_count"]
    errors = client.get(f"/batch/{created['batch_id']}/errors?per_page=1000").get_json()
    assert errors["total_errors"] == len(errors["errors"]) == status["invalid_count"]
