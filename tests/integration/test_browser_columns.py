"""The upload page's column picker in headless Chromium against gunicorn and real runners: the
header read in the page from the file's first bytes (BOM, quoted names, gzip, JSON lines, a
workbook's sheet field, a semicolon file's warning), the text and id columns picked from it and
used by the batch, kept through a refused upload, the names typed without JavaScript, and axe-core
on the page with the picker.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.integration.conftest import RunnerProcesses, WebServer
from tests.integration.test_browser import BATCH_URL, screenshot
from tests.integration.test_browser_live import all_results, no_axe_violations, open_page

#: A help-desk export: no 'text' column; a quoted header name holding a comma; a BOM before it.
HEADER = ["Ticket ID", "created", "product, line", "channel", "subject", "body"]
TICKETS = [
    ("T-100", "2026-01-02", "Router X1", "email", "Dropped again", "Keeps dropping, awful support."),
    ("T-101", "2026-01-03", "Modem", "chat", "Thanks", "Great help, thank you so much!"),
    ("T-102", "2026-01-04", "Router X1", "phone", "Question", "Is the\nmanual online?"),
]


def help_desk_csv(path: Path, rows: list[tuple[str, ...]] = TICKETS) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode())
    return path


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = open_page(browser)
    yield opened
    opened.context.close()


def option_texts(page: Page, label: str) -> list[str]:
    return page.get_by_label(label, exact=True).locator("option").all_inner_texts()


def test_the_picked_text_and_id_columns_are_the_batchs(
    page: Page, web_server: WebServer, runners: RunnerProcesses, tmp_path: Path
):
    runners.start()
    page.goto(f"{web_server.base}/")
    assert page.locator("#column-picker").is_hidden()  # until a file is chosen
    page.get_by_label("CSV file").set_input_files(str(help_desk_csv(tmp_path / "tickets.csv")))
    text = page.get_by_label("Column to score", exact=True)
    text.locator("option", has_text="body").wait_for(state="attached")
    # No 'text' column: nothing is preselected, and the form cannot be sent without a choice.
    assert text.input_value() == ""
    assert page.evaluate("document.getElementById('upload-form').checkValidity()") is False
    text.select_option(label="body")
    page.get_by_label("Id column", exact=True).select_option(label="Ticket ID")
    with page.expect_request(lambda request: request.method == "POST") as sent:
        page.get_by_role("button", name="Upload and score").click()
    assert "text_column=body" in sent.value.url and "id_column=Ticket+ID" in sent.value.url
    page.wait_for_url(BATCH_URL)
    public_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#summary-chart", timeout=120_000)

    rows = all_results(web_server.base, public_id)
    assert [(row["id"], row["text"]) for row in rows] == [(t[0], t[5]) for t in TICKETS]
    assert [row["fields"] for row in rows] == [
        {"created": t[1], "product, line": t[2], "channel": t[3], "subject": t[4]} for t in TICKETS
    ]
    assert page.locator("table.results td.id").all_inner_texts() == ["T-100", "T-101", "T-102"]


def test_the_picker_shows_the_headers_names(page: Page, web_server: WebServer, tmp_path: Path):
    page.goto(f"{web_server.base}/")
    chooser = page.get_by_label("CSV file")

    chooser.set_input_files(str(help_desk_csv(tmp_path / "tickets.csv")))
    page.locator("#pick-text option", has_text="body").wait_for(state="attached")
    assert option_texts(page, "Column to score") == ["Choose the column to score", *HEADER]
    # Without a column named id, the rows may be numbered by their line.
    assert option_texts(page, "Id column") == ["None: each row's line number", *HEADER]
    assert "names 6 columns" in page.locator("#columns-found").inner_text()
    no_axe_violations(page)
    screenshot(page, "column-picker.png", full_page=True)

    # 'Text' and 'ID' preselected whatever their case; blank lines before the header skipped;
    # a gzip file read inflated.
    mixed = tmp_path / "mixed.csv.gz"
    mixed.write_bytes(gzip.compress(b"\n\r\nlang,ID,Text\nen,1,fine\n"))
    chooser.set_input_files(str(mixed))
    page.locator("#pick-text option", has_text="lang").wait_for(state="attached")
    assert option_texts(page, "Column to score") == ["Choose the column to score", "lang", "ID", "Text"]
    assert option_texts(page, "Id column") == ["lang", "ID", "Text"]  # the server takes 'ID' anyway
    assert page.get_by_label("Column to score", exact=True).input_value() == "Text"
    assert page.get_by_label("Id column", exact=True).input_value() == "ID"

    # A JSON lines file: its first line's keys.
    lines = tmp_path / "reviews.jsonl"
    lines.write_text(json.dumps({"review_id": 7, "message": "ok", "stars": 4}) + "\n" + "{}\n")
    chooser.set_input_files(str(lines))
    page.locator("#pick-text option", has_text="message").wait_for(state="attached")
    assert option_texts(page, "Column to score")[1:] == ["review_id", "message", "stars"]

    # A semicolon-separated export: one column, and a word about why.
    semicolons = tmp_path / "excel.csv"
    semicolons.write_bytes(b"id;text\n1;fine\n")
    chooser.set_input_files(str(semicolons))
    page.locator("#pick-text option", has_text="id;text").wait_for(state="attached")
    assert "comma-separated files only" in page.locator("#columns-found").inner_text()

    # A workbook: its header is not read here; the sheet and the names are typed.
    book = tmp_path / "book.xlsx"
    book.write_bytes(b"PK\x03\x04 not read by the page")
    chooser.set_input_files(str(book))
    page.get_by_label("Sheet", exact=True).wait_for(state="visible")
    assert "first row" in page.locator("#columns-found").inner_text()
    assert page.locator("#pick-text").is_hidden() and page.locator("#type-text").is_visible()
    page.get_by_label("Column to score", exact=True).fill("body")
    page.get_by_label("Sheet", exact=True).fill("Tickets")
    no_axe_violations(page)


def test_without_javascript_the_columns_are_typed(
    browser: Browser, web_server: WebServer, runners: RunnerProcesses, tmp_path: Path
):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        runners.start()
        page.goto(f"{web_server.base}/")
        screenshot(page, "columns-without-javascript.png", full_page=True)
        page.get_by_label("Name of the text column").fill("body")
        page.get_by_label("Name of the id column").fill("ticket id")  # trimmed, any case
        page.get_by_label("CSV file").set_input_files(str(help_desk_csv(tmp_path / "tickets.csv")))
        page.get_by_role("button", name="Upload and score").click()
        page.wait_for_url(BATCH_URL)
        public_id = page.url.rsplit("/", 1)[1]
        page.wait_for_selector("#summary-chart", timeout=120_000)
        rows = all_results(web_server.base, public_id)
        assert [(row["id"], row["text"]) for row in rows] == [(t[0], t[5]) for t in TICKETS]

        # A name the header lacks: the form again, saying which columns there are, the name kept.
        page.goto(f"{web_server.base}/")
        page.get_by_label("Name of the text column").fill("message")
        page.get_by_label("CSV file").set_input_files(str(help_desk_csv(tmp_path / "tickets.csv")))
        page.get_by_role("button", name="Upload and score").click()
        problem = page.locator("#upload-problem").inner_text()
        assert "'message' (text_column)" in problem and "'body'" in problem
        assert page.get_by_label("Name of the text column").input_value() == "message"
    finally:
        context.close()


def test_a_refused_upload_keeps_the_picked_columns(page: Page, web_server: WebServer, tmp_path: Path):
    refused = help_desk_csv(tmp_path / "tickets.csv", [*TICKETS, ("T-103", "", "", "", "", "")])
    page.goto(f"{web_server.base}/")
    page.get_by_label("Strict: refuse the whole file if any row is bad").check()
    page.get_by_label("CSV file").set_input_files(str(refused))
    page.locator("#pick-text option", has_text="subject").wait_for(state="attached")
    page.get_by_label("Column to score", exact=True).select_option(label="subject")
    page.get_by_label("Id column", exact=True).select_option(label="Ticket ID")
    page.get_by_role("button", name="Upload and score").click()
    # The empty subject, strict: line 6, since a body before it holds a line break.
    assert "Line 6: the text is empty" in page.locator("#upload-problem").inner_text()
    assert page.locator("#column-names").count() == 0  # the typed fields are the picker's, with script
    page.get_by_label("CSV file").set_input_files(str(help_desk_csv(tmp_path / "fixed.csv")))
    page.locator("#pick-text option", has_text="subject").wait_for(state="attached")
    assert page.get_by_label("Column to score", exact=True).input_value() == "subject"
    assert page.get_by_label("Id column", exact=True).input_value() == "Ticket ID"
    no_axe_violations(page)
