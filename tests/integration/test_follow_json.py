"""A follower's rows are JSON that PostgreSQL writes (sql/queries/batch_commits.sql); they must be
the very objects the results pages and the results.ndjson download give, member for member, for
texts that JSON must escape, kept columns or none, a JSON Lines file, and a row that failed."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.batches import store
from core.batches.feed import Position, rows_after
from core.batches.queue import RunnerIdentity, claim_chunk, finish_chunk
from core.settings_web import longest_row_json
from jobrunner.chunk_scoring import score_chunk
from tests.helpers import make_csv, sample_texts
from tests.integration.test_faults import finished

AWKWARD = [
    'quotes " and \\ backslashes',
    "a tab\there, a bell \x07 and an escape \x1b",
    "line one\nline two\r\nline three",
    "ünïcödé, 日本語, emoji 😀👍🏽, and U+2028 \u2028 here",
    "</script><script>alert(1)</script>",
    "this row is ☠POISON☠ for the scorer",
]


def _help_desk_csv(texts: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ticket_id", "product", "body", "note"])
    for number, text in enumerate(texts, 1):
        writer.writerow(
            [f"T-{number}", ["Cable", "Router", "ünï"][number % 3], text, "" if number % 2 else "x,y"]
        )
    return out.getvalue().encode()


def _plain_csv(texts: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text"])
    writer.writerows([f"T-{number}", text] for number, text in enumerate(texts, 1))
    return out.getvalue().encode()


def _help_desk_jsonl(texts: list[str]) -> bytes:
    lines = (
        json.dumps({"ticket_id": f"T-{number}", "body": text, "stars": number % 5, "ok": number % 2 == 0})
        for number, text in enumerate(texts, 1)
    )
    return ("\n".join(lines) + "\n").encode()


FILES = {
    "kept columns": (_help_desk_csv, "help.csv", "?text_column=body&id_column=ticket_id"),
    "id and text alone": (_plain_csv, "plain.csv", ""),
    "json lines": (_help_desk_jsonl, "help.jsonl", "?text_column=body&id_column=ticket_id"),
}


@pytest.mark.parametrize("shape", FILES)
def test_followers_rows_equal_the_pages_and_the_download(client, upload, runners, db, shape):
    make, filename, query = FILES[shape]
    texts = AWKWARD + sample_texts(294, seed=97)
    batch_id = upload(make(texts), filename=filename, query=query)["batch_id"]
    runners.start(SCORER="tests.scorers:poisoned", MAX_ATTEMPTS="1", RETRY_BACKOFF_SECONDS="0.1")
    status = finished(client, batch_id, timeout=120)
    assert (status["processed_count"], status["failed_count"]) == (299, 1)
    batch = store.get(db, batch_id)
    pages = client.get(f"/batch/{batch_id}/results?per_page=500").get_json()["results"]
    download = [
        json.loads(line) for line in client.get(f"/batch/{batch_id}/results.ndjson").data.splitlines()
    ]

    items = rows_after(db, batch, Position(), 100)
    followed = [item for chunk in items if chunk.rows for item in json.loads(b"[" + chunk.json + b"]")]
    followed.sort(key=lambda item: item["row"])
    # Compared as Python writes them again: members in order, and 1.0 or -0.0 as floats.
    assert json.dumps(followed) == json.dumps(pages)
    exported = rows_after(db, batch, Position(), 100, export=True)
    lines = [json.loads(line) for chunk in exported if chunk.rows for line in chunk.json.split(b"\n")]
    lines.sort(key=lambda line: int(line["id"][2:]))
    assert json.dumps(lines) == json.dumps(download)
    assert sum(chunk.rows for chunk in items) == 300
    assert any("error" in item for item in followed)
    kept = shape != "id and text alone"
    assert all(("fields" in item) == kept for item in followed + lines)


def test_rows_come_as_utf8_whatever_the_connections_encoding(client, upload, runners, db):
    texts = ["café au lait, très bon", "naïve résumé", "plain words"]
    batch_id = upload(make_csv(texts))["batch_id"]
    runners.start()
    finished(client, batch_id, timeout=60)
    batch = store.get(db, batch_id)
    as_sent = rows_after(db, batch, Position(), 10)
    db.execute("SET client_encoding TO 'LATIN1'")  # decoded from Latin-1, then written as UTF-8
    decoded = rows_after(db, batch, Position(), 10)
    assert [chunk.json for chunk in decoded] == [chunk.json for chunk in as_sent]
    rows = json.loads(b"[" + as_sent[0].json + b"]")
    assert [row["text"] for row in rows] == texts


def test_a_row_at_its_longest_takes_no_more_json_than_the_chunk_size_check_counts(app, upload, db):
    """CHUNK_SIZE is refused at start when CHUNK_SIZE rows of ``longest_row_json`` bytes could pass
    PostgreSQL's 1 GB: so no row may take more, a failed one with its error included. Every
    character here is one JSON writes in six bytes, each cap at its longest."""
    from dataclasses import replace

    from webapp.upload.csv_records import MAX_KEPT_CHARS, MAX_KEPT_COLUMNS, MAX_KEPT_NAME_CHARS

    settings = app.extensions["settings"]
    wide = "\x01"
    names = [f"k{number:02d}" + wide * (MAX_KEPT_NAME_CHARS - 3) for number in range(MAX_KEPT_COLUMNS)]
    kept = [wide * MAX_KEPT_CHARS] * len(names)
    row = [wide * settings.max_id_chars, wide * settings.max_text_chars, *kept]
    out = io.StringIO()
    csv.writer(out).writerows([["id", "text", *names], row])
    batch_id = upload(out.getvalue().encode())["batch_id"]
    chunk = claim_chunk(db, "test:0", 60)
    scoring = replace(settings, scorer="tests.scorers:control_characters", max_attempts=1)
    assert finish_chunk(db, score_chunk(chunk, scoring), RunnerIdentity("test:0", "test", 0, "control"))
    batch = store.get(db, batch_id)
    bound = longest_row_json(settings.max_text_chars, settings.max_id_chars)
    for export in (False, True):
        (item,) = rows_after(db, batch, Position(), 1, export=export)
        assert item.rows == 1 and json.loads(item.json)["error"].startswith("ValueError: \x01")
        assert len(item.json) <= bound, (export, len(item.json) - bound)
