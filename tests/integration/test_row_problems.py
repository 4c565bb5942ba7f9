"""Rows that cannot be scored are set aside and counted; the batch goes on."""

from __future__ import annotations

import csv
import io

import pytest

from tests.integration.helpers import score_everything


def post(client, body: bytes, query: str = "", content_type: str = "text/csv"):
    return client.post(f"/batch/upload{query}", data=body, content_type=content_type)


def test_invalid_rows_are_counted_listed_and_skipped(client, db):
    body = (
        b"id,text\n"
        b"a,I love it\n"
        b"b,too,many\n"
        b"c,   \n"
        b"d,nul\x00inside\n"
        b"e," + b"long " * 5000 + b"\n"
        b"f,I hate it\n"
        b"a,duplicate ids are fine\n"
    )
    response = post(client, body)
    assert response.status_code == 202
    created = response.get_json()
    assert (created["total_count"], created["invalid_count"]) == (7, 4)
    batch_id = created["batch_id"]

    status = client.get(f"/batch/{batch_id}").get_json()
    assert (status["processed_count"], status["invalid_count"], status["progress_percent"]) == (0, 4, 57.1)
    errors = client.get(f"/batch/{batch_id}/errors").get_json()
    assert errors["total_errors"] == 4
    assert [(e["error"], e["line"], e["id"], e["reason"]) for e in errors["errors"]] == [
        (1, 3, "b", "wrong_field_count"),
        (2, 4, "c", "empty_text"),
        (3, 5, "d", "nul_character"),
        (4, 6, "e", "text_too_long"),
    ]
    assert "25,000 characters" in errors["errors"][3]["detail"]

    assert score_everything(db) == 1
    status = client.get(f"/batch/{batch_id}").get_json()
    assert status["status"] == "completed"
    assert status["processed_count"] + status["invalid_count"] == status["total_count"]
    assert status["progress_percent"] == 100.0
    assert sum(status["summary"][s] for s in ("positive", "negative", "neutral")) == 3
    results = client.get(f"/batch/{batch_id}/results").get_json()["results"]
    assert [(r["row"], r["line"], r["id"]) for r in results] == [(1, 2, "a"), (2, 7, "f"), (3, 8, "a")]
    # Every row to score stays in batch_inputs for the batch's life; the set-aside ones were moved
    # to batch_row_errors by the upload (none is left with its negative row number).
    kept = db.execute("SELECT row_number, line_number, client_id FROM batch_inputs ORDER BY row_number")
    assert kept.fetchall() == [(1, 2, "a"), (2, 7, "f"), (3, 8, "a")]


def test_errors_pages_follow_the_keyset_conventions(client, db):
    lines = ["id,text"] + [f"{i},{'' if i % 3 == 0 else 'ok'}" for i in range(1, 301)]
    created = post(client, "\n".join(lines).encode()).get_json()
    assert created["invalid_count"] == 100
    collected, url = [], f"/batch/{created['batch_id']}/errors?per_page=30"
    while url:
        response = client.get(url)
        body = response.get_json()
        collected += body["errors"]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert [e["id"] for e in collected] == [str(i) for i in range(3, 301, 3)]
    assert [e["error"] for e in collected] == list(range(1, 101))
    # A results cursor does not work on the errors list.
    score_everything(db)
    cursor = client.get(f"/batch/{created['batch_id']}/results?per_page=5").get_json()["next_cursor"]
    assert client.get(f"/batch/{created['batch_id']}/errors?after={cursor}").status_code == 400


@pytest.mark.parametrize(
    ("query", "content_type"),
    [
        ("?encoding=cp1252", "text/csv"),
        ("", "text/csv; charset=windows-1252"),
        ("?encoding=latin-1", "text/csv"),
    ],
)
def test_excel_exports_in_other_encodings(client, db, query, content_type):
    text = "Très bon café, à refaire" if "latin" in query else "Très “bon” café – à refaire €"
    body = b"id,text\r\n" + f'1,"{text}"\r\n'.encode("cp1252")
    refused = post(client, body)  # not UTF-8 unless told
    assert refused.status_code == 400 and refused.get_json()["type"] == "/problems/not-utf8"
    response = post(client, body, query, content_type)
    assert response.status_code == 202, response.get_json()
    score_everything(db)
    result = client.get(f"/batch/{response.get_json()['batch_id']}/results").get_json()["results"][0]
    assert result["text"] == text


def test_multipart_part_charset_is_honoured(client, db):
    body = 'id,text\n1,"très bon"\n'.encode("latin-1")
    response = client.post(
        "/batch/upload",
        data={"file": (io.BytesIO(body), "x.csv", "text/csv; charset=iso-8859-1")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()


def test_texts_round_trip_byte_for_byte(client, db):
    texts = [
        'quoted "words", commas, and\nnewlines\r\ninside',
        "emoji 😀👍🏽👨‍👩‍👧 and flags 🇫🇷",
        "עברית ومرحبا mixed with English",
        "  leading and trailing spaces  ",
        "tab\tinside, and a lone \r carriage return",
        "=SUM(A1:A2) looks like a formula",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["text", "id"])
    for index, text in enumerate(texts):
        writer.writerow([text, f"id-{index}"])
    response = client.post(
        "/batch/upload",
        data={"file": (io.BytesIO(buffer.getvalue().encode()), "x.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    score_everything(db)
    results = client.get(f"/batch/{response.get_json()['batch_id']}/results").get_json()["results"]
    assert [r["text"] for r in results] == texts
    assert [r["id"] for r in results] == [f"id-{i}" for i in range(len(texts))]


def test_a_huge_id_is_set_aside_and_a_long_file_name_is_shortened(client, db):
    import io

    body = b"id,text\n" + b"x" * 2_000_000 + b",a fine text\nok,another fine text\n"
    name = "n" * 1_000 + ".csv"
    response = client.post(
        "/batch/upload", data={"file": (io.BytesIO(body), name)}, content_type="multipart/form-data"
    )
    assert response.status_code == 202
    created = response.get_json()
    assert created["invalid_count"] == 1 and len(created["filename"]) == 255
    errors = client.get(f"/batch/{created['batch_id']}/errors").get_json()["errors"]
    assert errors[0]["reason"] == "id_too_long" and len(errors[0]["id"]) == 1_000
    assert "2,000,000 characters" in errors[0]["detail"]
