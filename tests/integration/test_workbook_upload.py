""".xlsx uploads: a workbook made with openpyxl gives the same results as the same rows in CSV; the
sheet is chosen by ``sheet=``; damaged workbooks, zip bombs and other binary files are refused
and nothing is stored."""

from __future__ import annotations

import csv
import io
import struct
import zipfile
from functools import cache

import openpyxl
import pytest
import requests

from tests.helpers import make_csv, sample_texts
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
from webapp.upload import workbook as workbook_module
from webapp.upload.csv_reader import UploadOptions
from webapp.upload.file_rows import XLSX_MEDIA_TYPE
from webapp.upload.workbook import MAX_HEADER_WIDTH, WorkbookRows
from webapp.upload.workbook_archive import MAX_ENTRIES, MAX_PART_BYTES, MAX_SHARED_STRINGS_BYTES, part_cap

TEXTS = sample_texts(300, seed=23)


def workbook(*sheets: tuple[str, list[list[object]]]) -> bytes:
    """An .xlsx file with these sheets (title, rows), as openpyxl writes it."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def results(client, batch_id: str) -> list[tuple]:
    """(id, text, sentiment, score, compound) of every scored row, in file order."""
    rows, after = [], None
    while True:
        query = f"?per_page=1000&after={after}" if after else "?per_page=1000"
        page = client.get(f"/batch/{batch_id}/results{query}").get_json()
        rows += [(r["id"], r["text"], r["sentiment"], r["score"], r["compound"]) for r in page["results"]]
        after = page.get("next_cursor")
        if not page["results"] or after is None:
            return rows


def finished(client, db, answer: dict) -> dict:
    score_everything(db)
    return client.get(f"/batch/{answer['batch_id']}").get_json()


def test_a_workbook_scores_as_the_same_rows_in_csv(client, db):
    # Numbers as ids (Excel's usual), a column the service ignores, a blank row, a row without
    # text (set aside), and cells left empty at the end of rows.
    rows: list[list[object]] = [["ID", "Text", "product"]]
    for index, text in enumerate(TEXTS, start=1):
        rows.append([index, text, "widget" if index % 2 else None])
        if index == 50:
            rows.append([])
    rows.append([len(TEXTS) + 1, None])
    csv_ids = [str(index) for index in range(1, len(TEXTS) + 2)]
    csv_body = make_csv([*TEXTS, ""], ids=csv_ids)

    from_csv = finished(client, db, upload_file(client, csv_body, "reviews.csv"))
    from_xlsx = finished(client, db, upload_file(client, workbook(("Reviews", rows)), "reviews.xlsx"))

    for key in ("status", "total_count", "invalid_count", "processed_count", "summary"):
        assert from_xlsx[key] == from_csv[key], key
    assert from_xlsx["total_count"] == len(TEXTS) + 1 and from_xlsx["invalid_count"] == 1
    scored = results(client, from_xlsx["batch_id"])
    assert len(scored) == len(TEXTS)
    assert scored == results(client, from_csv["batch_id"])
    errors = client.get(f"/batch/{from_xlsx['batch_id']}/errors").get_json()["errors"]
    # The sheet's row number: the header, 300 rows, a blank row, then the row without text.
    assert [(e["line"], e["id"], e["reason"]) for e in errors] == [(len(TEXTS) + 3, "301", "empty_text")]


def test_a_workbook_sent_as_the_body_with_its_media_type(client, db):
    body = workbook(("Sheet1", [["text"], ["I love it"], ["I hate it"]]))
    answer = client.post("/batch/upload", data=body, content_type=XLSX_MEDIA_TYPE)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    batch = finished(client, db, answer.get_json())
    # Without an id column a row's id is its row number, as a CSV row's is its line.
    assert [(r[0], r[1], r[2]) for r in results(client, batch["batch_id"])] == [
        ("2", "I love it", "positive"),
        ("3", "I hate it", "negative"),
    ]


def test_cells_become_text_as_a_csv_export_writes_them(client, db):
    from datetime import date, datetime

    rows = [["id", "text"], [1.0, "fine"], [True, "fine"], [date(2024, 5, 1), "fine"]]
    rows += [[datetime(2024, 5, 1, 12, 30), "fine"], [2.5, "fine"]]
    answer = upload_file(client, workbook(("S", rows)), "typed.xlsx")
    ids = [r[0] for r in results(client, finished(client, db, answer)["batch_id"])]
    assert ids == ["1", "TRUE", "2024-05-01", "2024-05-01 12:30:00", "2.5"]


SHEETS = (
    ("Summary", [["note"], ["not rows to score"]]),
    ("Reviews", [["id", "text"], ["a", "I love it"], ["b", "Terrible"]]),
)


@pytest.mark.parametrize("where", ["query", "form"])
def test_sheet_picks_the_sheet(client, db, where):
    options = {"query": "?sheet=Reviews"} if where == "query" else {"fields": {"sheet": "Reviews"}}
    answer = upload_file(client, workbook(*SHEETS), "book.xlsx", **options)
    assert answer["total_count"] == 2
    assert [r[:2] for r in results(client, finished(client, db, answer)["batch_id"])] == [
        ("a", "I love it"),
        ("b", "Terrible"),
    ]


def test_the_first_sheet_is_read_without_sheet(client, db):
    # The first sheet has no 'text' column: the header rules of a CSV apply to it.
    problem = assert_problem(post_file(client, workbook(*SHEETS), "book.xlsx"), 400, "missing-text-column")
    assert "'note'" in problem["detail"]
    assert_nothing_written(db)


def test_an_unknown_sheet_is_a_400_listing_the_sheets(client, db):
    answer = post_file(client, workbook(*SHEETS), "book.xlsx", query="?sheet=Nope")
    problem = assert_problem(answer, 400, "unknown-sheet")
    assert "'Nope'" in problem["detail"] and "'Summary', 'Reviews'" in problem["detail"]
    assert_nothing_written(db)


def test_sheet_on_a_csv_is_a_400(client, db):
    answer = post_file(client, make_csv(["fine"]), "x.csv", query="?sheet=Reviews")
    assert "xlsx" in assert_problem(answer, 400, "invalid-parameter")["detail"]
    assert_nothing_written(db)


def test_sheet_after_the_file_is_refused(client, db):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="book.xlsx"\r\n\r\n'
        + workbook(*SHEETS)
        + b'\r\n--b\r\nContent-Disposition: form-data; name="sheet"\r\n\r\nReviews\r\n--b--\r\n'
    )
    answer = client.post("/batch/upload", data=body, content_type="multipart/form-data; boundary=b")
    assert_problem(answer, 400, "option-after-file")
    assert_nothing_written(db)


def _with_entry(body: bytes, name: str, data: bytes, count: int = 1) -> bytes:
    """The workbook with ``count`` more entries of ``data`` (name, name1, name2, ...)."""
    out = io.BytesIO(body)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        for index in range(count):
            archive.writestr(f"{name}{index or ''}", data)
    return out.getvalue()


@pytest.fixture
def small_limits_client(database_url):
    """The app with MAX_UPLOAD_BYTES 200,000."""
    app = create_app({"database_url": database_url, "migrate_on_start": False, "max_upload_bytes": 200_000})
    yield app.test_client()
    app.extensions["db_pool"].close()


def test_a_zip_bomb_named_xlsx_is_a_413_and_nothing_is_stored(small_limits_client, db):
    before = table_counts(db)
    bomb = _with_entry(workbook(*SHEETS), "xl/media/image1.png", bytes(20_000_000))
    assert len(bomb) < 200_000
    problem = assert_problem(post_file(small_limits_client, bomb, "book.xlsx"), 413, "upload-too-large")
    assert "inflates to 20,0" in problem["detail"]
    assert_nothing_written(db, before)


def test_a_sheet_that_inflates_past_the_limit_is_a_413(small_limits_client, db):
    rows = [["id", "text"], *([n, "the same review again and again"] for n in range(5_000))]
    body = workbook(("Reviews", rows))
    assert len(body) < 200_000
    assert_problem(post_file(small_limits_client, body, "book.xlsx"), 413, "upload-too-large")
    assert_nothing_written(db)


def _rewritten(body: bytes, name: str, change) -> bytes:
    """The workbook with the entry ``name``'s bytes replaced by ``change(bytes)``."""
    source = zipfile.ZipFile(io.BytesIO(body))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = source.read(info.filename)
            archive.writestr(info.filename, change(data) if info.filename == name else data)
    return out.getvalue()


def test_a_styles_part_past_its_cap_is_a_413_before_openpyxl_reads_it(client, db):
    # openpyxl reads styles.xml whole into objects (~70 bytes each byte of XML): a few kB of
    # deflated <dxf/> would hold a worker's memory; the part's own cap refuses it first.
    padding = b"<dxf/>" * (MAX_PART_BYTES // 6 + 1)
    body = _rewritten(
        workbook(*SHEETS),
        "xl/styles.xml",
        lambda xml: xml.replace(b"</styleSheet>", b"<dxfs>" + padding + b"</dxfs></styleSheet>"),
    )
    assert len(body) < 100_000
    before = table_counts(db)
    problem = assert_problem(
        post_file(client, body, "book.xlsx", query="?sheet=Reviews"), 413, "upload-too-large"
    )
    assert "'xl/styles.xml'" in problem["detail"] and f"{MAX_PART_BYTES:,}" in problem["detail"]
    assert_nothing_written(db, before)
    # The same workbook with its styles as written is read.
    good = post_file(client, workbook(*SHEETS), "book.xlsx", query="?sheet=Reviews")
    assert good.status_code == 202, good.get_data(as_text=True)


def test_a_part_is_capped_by_the_content_type_it_declares_not_its_name():
    sheet = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
    strings = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
    book = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    assert part_cap("xl/worksheets/sheet1.xml", {sheet}) is None
    assert part_cap("xl/sharedStrings.xml", {strings}) == MAX_SHARED_STRINGS_BYTES
    assert part_cap("xl/media/image1.png", set()) is None
    # A workbook part (read whole) named like a sheet, or declared as both, is capped as a whole part.
    assert part_cap("xl/worksheets/sheet1.xml", {book}) == MAX_PART_BYTES
    assert part_cap("xl/worksheets/sheet1.xml", {sheet, book}) == MAX_PART_BYTES
    assert part_cap("xl/worksheets/sheet1.xml", set()) == MAX_PART_BYTES
    assert part_cap("xl/media/image1.png", {book}) == MAX_PART_BYTES
    assert part_cap("xl/styles.xml", set()) == MAX_PART_BYTES


GIB = 1024**3


@cache
def bomb() -> bytes:
    """A real workbook with one more entry, 1.1 GiB of zeros deflated to a few MB."""
    out = io.BytesIO(workbook(*SHEETS))
    zero = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("xl/media/image1.png", "w") as entry,
    ):
        for _ in range(1_100):
            entry.write(zero)
    return out.getvalue()


def test_a_zip_bomb_is_refused_by_real_gunicorn_with_the_default_limits(serve, db):
    web = serve()  # MAX_UPLOAD_BYTES 1 GiB
    body = bomb()
    assert len(body) < 10 * 1024 * 1024
    assert sum(entry.file_size for entry in zipfile.ZipFile(io.BytesIO(body)).infolist()) > 1.07 * GIB
    before = table_counts(db)
    answer = requests.post(
        f"{web.base}/batch/upload",
        files={"file": ("reviews.xlsx", body, XLSX_MEDIA_TYPE)},
        timeout=300,
    )
    assert answer.status_code == 413, answer.text[:500]
    assert answer.headers["Content-Type"] == PROBLEM
    assert answer.json()["type"] == "/problems/upload-too-large"
    assert "1,073,741,824" in answer.json()["detail"]
    assert_nothing_written(db, before)
    # The same workbook without the bomb goes through the same server.
    good = requests.post(
        f"{web.base}/batch/upload",
        data=workbook(*SHEETS),
        params={"sheet": "Reviews"},
        headers={"Content-Type": XLSX_MEDIA_TYPE},
        timeout=60,
    )
    assert good.status_code == 202 and good.json()["total_count"] == 2, good.text


def _declaring(body: bytes, name: str, size: int) -> bytes:
    """The archive with ``name``'s inflated size in the central directory changed to ``size``."""
    data = bytearray(body)
    start = data.find(b"PK\x01\x02")
    while start != -1:
        (name_length,) = struct.unpack_from("<H", data, start + 28)
        if data[start + 46 : start + 46 + name_length] == name.encode():
            struct.pack_into("<I", data, start + 24, size)
            return bytes(data)
        start = data.find(b"PK\x01\x02", start + 46)
    raise AssertionError(f"{name} is not in the archive")


def test_an_entry_that_inflates_past_its_declared_size_is_cut_there_and_refused(client, db):
    # The sheet's XML says it inflates to 100 bytes: zipfile stops there, and the cut XML (or the
    # CRC check) refuses the workbook; nothing inflates past what the directory declared.
    body = _declaring(workbook(*SHEETS), "xl/worksheets/sheet2.xml", 100)
    assert_problem(post_file(client, body, "book.xlsx", query="?sheet=Reviews"), 400, "invalid-xlsx")
    assert_nothing_written(db)


def test_too_many_entries_is_a_400(client, db):
    body = _with_entry(workbook(*SHEETS), "xl/media/x", b"", count=MAX_ENTRIES)
    problem = assert_problem(post_file(client, body, "book.xlsx"), 400, "invalid-xlsx")
    assert f"{MAX_ENTRIES:,}" in problem["detail"]
    assert_nothing_written(db)


@pytest.mark.parametrize(
    ("body", "name"),
    [
        pytest.param(lambda: workbook(*SHEETS)[:-200], "book.xlsx", id="truncated"),
        pytest.param(lambda: b"PK\x03\x04" + bytes(range(256)) * 8, "book.xlsx", id="not-a-zip"),
        pytest.param(lambda: make_csv(["fine"]), "book.xlsx", id="csv-named-xlsx"),
        pytest.param(lambda: _with_entry(b"", "hello.txt", b"hi"), "book.xlsx", id="zip-not-workbook"),
    ],
)
def test_a_damaged_workbook_is_a_400_and_nothing_is_stored(client, db, body, name):
    assert_problem(post_file(client, body(), name), 400, "invalid-xlsx")
    assert_nothing_written(db)


@pytest.mark.parametrize(
    ("body", "name", "kind"),
    [
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "book.xls", "old Excel", id="xls"),
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "book.xlsx", None, id="xls-as-xlsx"),
        pytest.param(lambda: workbook(*SHEETS), "book.zip", "ZIP archive", id="xlsx-named-zip"),
    ],
)
def test_other_binary_files_are_refused_as_today(client, db, body, name, kind):
    data = body() if callable(body) else body
    if kind is None:  # declared a workbook, but not a zip: refused as a damaged workbook
        assert_problem(post_file(client, data, name), 400, "invalid-xlsx")
    else:
        assert kind in assert_problem(post_file(client, data, name), 400, "binary-file")["detail"]
    assert_nothing_written(db)


def _download(client, url: str) -> str:
    with client.get(url) as response:  # closed: an export holds a slot of MAX_EXPORTS until then
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)


def test_a_workbook_keeps_its_other_columns_as_the_same_rows_in_csv(client, db):
    from datetime import date, datetime

    header = ["Ticket", "created", "stars", "price", "verified", "seen", "", "Body"]
    sheet: list[list[object]] = [header]
    as_text: list[list[str]] = [header]
    for index, text in enumerate(TEXTS[:40], start=1):
        created = date(2026, 1, index % 28 + 1)
        price = None if index == 7 else index + 0.1 + 0.15  # 0.25 to 15 digits, as Excel shows it
        seen = datetime(2026, 2, 1, 9, index)
        cells = [f"T-{index}", created, index % 5 + 1, price, index % 2 == 0, seen, "not kept", text]
        sheet.append(cells)
        as_text.append(
            [
                f"T-{index}",
                created.isoformat(),
                str(index % 5 + 1),
                "" if price is None else f"{index}.25",
                "TRUE" if index % 2 == 0 else "FALSE",
                f"2026-02-01 09:{index:02d}:00",
                "not kept",
                text,
            ]
        )
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(as_text)
    options = {"query": "?text_column=body&id_column=ticket"}
    from_csv = finished(client, db, upload_file(client, out.getvalue().encode(), "tickets.csv", **options))
    answer = upload_file(client, workbook(("Tickets", sheet)), "tickets.xlsx", **options)
    from_xlsx = finished(client, db, answer)
    assert from_xlsx["invalid_count"] == 0 and from_xlsx["processed_count"] == 40

    def pages(batch_id: str) -> list[dict]:
        rows = client.get(f"/batch/{batch_id}/results?per_page=100").get_json()["results"]
        return [{k: v for k, v in row.items() if k != "line"} for row in rows]

    xlsx_rows = pages(from_xlsx["batch_id"])
    assert xlsx_rows == pages(from_csv["batch_id"])
    names = ["created", "stars", "price", "verified", "seen"]  # the unnamed column is not kept
    assert xlsx_rows[6]["fields"] == dict(zip(names, as_text[7][1:6], strict=True))
    assert xlsx_rows[6]["fields"]["price"] == ""
    assert xlsx_rows[0]["fields"] == {
        "created": "2026-01-02",
        "stars": "2",
        "price": "1.25",
        "verified": "FALSE",
        "seen": "2026-02-01 09:01:00",
    }
    for export in ("results.csv", "results.ndjson"):
        from_sheet = _download(client, f"/batch/{from_xlsx['batch_id']}/{export}")
        assert from_sheet == _download(client, f"/batch/{from_csv['batch_id']}/{export}"), export
    table = list(csv.reader(io.StringIO(_download(client, f"/batch/{from_xlsx['batch_id']}/results.csv"))))
    assert table[0][-len(names) :] == names


@pytest.mark.parametrize(
    ("rows", "slug"),
    [
        ([["id", "text", *(f"c{n}" for n in range(51))], [1, "fine"]], "too-many-columns"),
        ([["id", "text", "note"], [1, "fine", "ok"], [2, "fine", "n" * 2_001]], "kept-column-too-long"),
    ],
)
def test_a_workbook_past_the_kept_columns_caps_is_a_400(client, db, rows, slug):
    problem = assert_problem(post_file(client, workbook(("S", rows)), "book.xlsx"), 400, slug)
    if slug == "kept-column-too-long":
        assert problem["detail"].startswith("Line 3: the column 'note'")
    assert_nothing_written(db)


def _with_rows(body: bytes, rows_xml: bytes) -> bytes:
    """The workbook with ``rows_xml`` added at the end of its first sheet's data."""
    return _rewritten(
        body, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", rows_xml + b"</sheetData>")
    )


def test_a_row_with_a_cell_far_right_costs_the_header_width_and_is_set_aside(client, db, monkeypatch):
    # openpyxl's rows fill every gap before a cell: a lone cell at XFD would be 16,384 values.
    wide = b"".join(
        b'<row r="%d"><c r="XFD%d" t="inlineStr"><is><t>x</t></is></c></row>' % (n, n) for n in range(3, 503)
    )
    body = _with_rows(workbook(("Reviews", [["id", "text"], ["1", "good"]])), wide)
    made = []
    real = workbook_module.cell_text

    def counted(value: object) -> str:
        made.append(value)
        return real(value)

    monkeypatch.setattr(workbook_module, "cell_text", counted)
    rows = list(WorkbookRows([body], UploadOptions(), None, 10**9))
    assert len(rows) == 501
    assert [row.problem for row in rows[1:]] == ["wrong_field_count"] * 500
    assert len(made) <= 502 * (2 + 1)  # every row, the header's included: at most width + 1 values
    # Uploaded, the same rows are set aside and the good one scored.
    answer = post_file(client, body, "book.xlsx")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["total_count"] == 501 and answer.get_json()["invalid_count"] == 500


def test_a_header_wider_than_the_limit_is_a_400(client, db):
    column = openpyxl.utils.get_column_letter(MAX_HEADER_WIDTH + 1).encode()
    far = b'<c r="%s1" t="inlineStr"><is><t>far</t></is></c></row>' % column
    body = _rewritten(
        workbook(("Reviews", [["id", "text"], ["1", "good"]])),
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace(b"</row>", far, 1),
    )
    assert_problem(post_file(client, body, "book.xlsx"), 400, "too-many-columns")
    assert_nothing_written(db)
