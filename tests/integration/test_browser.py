"""The pages in a real browser: headless Chromium (Debian's package, or CHROMIUM=path)
driven by Playwright against gunicorn and real runner processes on localhost.

These tests never skip: if Chromium cannot start, they fail and say how to
install it. Screenshots go to test-artifacts/screenshots/ (gitignored);
``make screenshots`` copies the three the README shows into docs/.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO, RunnerProcesses, WebServer
from tests.integration.test_web_pages import HOSTILE

SCREENSHOTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
BATCH_URL = re.compile(r"/batch/batch-[0-9a-f]{32}$")
# Without these, Chromium keeps trying to reach Google's servers, which this
# machine's closed network refuses (see the environment notes in the README).
QUIET_CHROMIUM = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-gpu",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise AssertionError(
        "No Chromium found for the browser tests: install it (Debian/Ubuntu: apt-get install chromium) "
        "or set CHROMIUM to the browser's path."
    )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page: Page, name: str, **options: object) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), **options)


def write_csv(tmp_path: Path, texts: list[str], name: str = "reviews.csv", **kwargs: object) -> Path:
    path = tmp_path / name
    path.write_bytes(make_csv(texts, **kwargs))
    return path


def upload_through_form(page: Page, base: str, path: Path) -> str:
    """Choose the file in the form, submit it, land on the batch page; its URL."""
    page.goto(f"{base}/")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_url(BATCH_URL)
    return page.url


def progress_value(page: Page) -> float:
    return float(page.get_by_role("progressbar").get_attribute("aria-valuenow") or "nan")


def table_column(page: Page, css: str) -> list[str]:
    return [cell.text_content() or "" for cell in page.locator(f"table.results td.{css}").all()]


def test_upload_watch_read_and_download(
    page: Page, web_server: WebServer, runners: RunnerProcesses, tmp_path: Path
):
    base = web_server.base
    texts = sample_texts(2_000, seed=11)
    source = write_csv(tmp_path, texts)
    # A batch already done, so the upload page shows the list as people see it.
    requests.post(f"{base}/batch/upload", files={"file": ("earlier.csv", make_csv(texts[:300]))}, timeout=30)
    # One deliberately slowed runner, so that the batch is seen in progress.
    runners.start(SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.2")

    page.goto(f"{base}/")

    def earlier_done() -> bool:
        page.reload()
        return "completed" in page.locator("table.batches").inner_text().lower()

    wait_for(earlier_done, timeout=30, interval=0.5)
    screenshot(page, "upload-page.png")
    page.get_by_label("CSV file").set_input_files(str(source))
    assert "reviews.csv" in page.locator("#file-chosen").inner_text()
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_url(BATCH_URL)
    public_id = page.url.rsplit("/", 1)[1]
    assert page.get_by_role("heading", level=1).inner_text() == "reviews.csv"

    # The bar moves without a reload: watch it until it shows speed and time left.
    seen = [progress_value(page)]

    def moving() -> bool:
        seen.append(progress_value(page))
        return 0 < seen[-1] < 100 and "rows/s" in page.locator("#rate").inner_text()

    wait_for(moving, timeout=60, interval=0.1)
    assert re.fullmatch(r"[\d,]+ rows/s", page.locator("#rate").inner_text())
    assert page.locator("#time-left").inner_text() != "—"
    screenshot(page, "batch-in-progress.png")
    wait_for(lambda: seen.append(progress_value(page)) or seen[-1] == 100, timeout=120, interval=0.1)
    assert seen == sorted(seen), "the bar never goes backwards"
    # The bar can reach 100% from the last progress event a moment before the finished
    # page's sections (the summary among them) have been fetched and swapped in.
    page.locator("#summary-chart").wait_for(state="visible", timeout=30_000)
    assert page.get_by_role("progressbar").get_attribute("aria-valuetext") == "2,000 of 2,000 rows (100.0%)"

    # The chart agrees with the API's summary.
    summary = requests.get(f"{base}/batch/{public_id}", timeout=10).json()["summary"]
    for sentiment in ("positive", "negative", "neutral"):
        count = summary[sentiment]
        row = page.locator(f".chart-row[data-sentiment={sentiment}]")
        assert row.locator(".count").inner_text() == f"{count:,}"
        assert f"({round(100 * count / 2_000, 1)}%)" in row.inner_text()
    assert page.locator(".chart-row svg rect").count() == 6
    screenshot(page, "batch-completed.png")

    # The first page of results, then the next one and back.
    assert table_column(page, "id") == [f"r{i}" for i in range(1, 51)]
    assert table_column(page, "text") == texts[:50]
    # The pagers above and below the table link alike: the one below, as a reader reaches it.
    pager = page.get_by_role("navigation", name="Results pages (bottom)")
    pager.get_by_role("link", name="Next →").click()
    assert table_column(page, "id") == [f"r{i}" for i in range(51, 101)]
    pager.get_by_role("link", name="← Previous").click()
    assert table_column(page, "id") == [f"r{i}" for i in range(1, 51)]
    page.get_by_role("link", name="Negative", exact=True).click()
    assert set(page.locator("table.results .sentiment").all_inner_texts()) == {"negative"}

    # The CSV download holds every row as uploaded.
    with page.expect_download() as download:
        page.locator("#download-csv").click()
    downloaded = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(downloaded)))
    assert [(row["id"], row["text"]) for row in rows] == [(f"r{i + 1}", t) for i, t in enumerate(texts)]


def test_user_text_never_runs_and_shows_literally(page: Page, web_server: WebServer, runners, tmp_path):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ids = [f"<img src=x onerror=alert({i})>" for i in range(len(HOSTILE))]
    source = write_csv(tmp_path, HOSTILE, name="<script>alert(9)<!--.csv", ids=ids)
    runners.start()
    upload_through_form(page, web_server.base, source)
    page.wait_for_selector("#summary-chart", timeout=60_000)
    assert table_column(page, "text") == HOSTILE
    assert table_column(page, "id") == ids
    assert page.get_by_role("heading", level=1).inner_text() == "<script>alert(9)<!--.csv"
    assert page.locator("main img, main b, main i").count() == 0
    assert page.evaluate("window.__xss") is None
    page.goto(f"{web_server.base}/")
    assert "<script>alert(9)<!--.csv" in page.locator("table.batches").inner_text()
    assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_a_dropped_file_is_uploaded(page: Page, web_server: WebServer):
    page.goto(f"{web_server.base}/")
    dropped = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            const body = "id,text\\n1,what a lovely day\\n";
            transfer.items.add(new File([body], "dropped.csv", {type: "text/csv"}));
            return transfer;
        }"""
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": dropped})
    assert "dragging" in (page.locator("#dropzone").get_attribute("class") or "")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    assert "dropped.csv" in page.locator("#file-chosen").inner_text()
    assert page.evaluate("document.getElementById('file').files[0].name") == "dropped.csv"
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_url(BATCH_URL)
    assert page.get_by_role("heading", level=1).inner_text() == "dropped.csv"


def test_the_form_works_from_the_keyboard(page: Page, web_server: WebServer, tmp_path):
    page.goto(f"{web_server.base}/")
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    wanted = ["strict", "encoding", "file", "upload-button"]
    assert [name for name in order if name in wanted] == wanted
    page.get_by_label("Strict: refuse the whole file if any row is bad").focus()
    page.keyboard.press("Space")
    assert page.get_by_label("Strict: refuse the whole file if any row is bad").is_checked()
    # A refused file comes back as the form with the reason in words, strict still ticked.
    page.get_by_label("CSV file").set_input_files(str(write_csv(tmp_path, ["fine", ""])))
    page.get_by_role("button", name="Upload and score").press("Enter")
    page.wait_for_selector("#upload-problem")
    problem = page.locator("#upload-problem").inner_text()
    assert "line 3" in problem.lower() and "{" not in problem
    assert page.evaluate("document.activeElement.id") == "upload-problem"
    assert page.get_by_label("Strict: refuse the whole file if any row is bad").is_checked()


@pytest.mark.parametrize("width", [375, 1440])
def test_pages_fit_narrow_and_wide_screens(browser: Browser, web_server: WebServer, runners, tmp_path, width):
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    try:
        runners.start()
        texts = [text + " " + "word " * 60 for text in sample_texts(120)]  # long texts must wrap
        upload_through_form(page, web_server.base, write_csv(tmp_path, texts))
        page.wait_for_selector("#summary-chart", timeout=60_000)
        for url in (page.url, f"{web_server.base}/"):
            page.goto(url)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{url} scrolls sideways by {overflow}px at {width}px"
            # Nothing hides in a sideways-scrolling box either: every cell is on screen.
            right = page.evaluate(
                "Math.max(0, ...Array.from(document.querySelectorAll('td'),"
                " cell => cell.getBoundingClientRect().right))"
            )
            assert right <= width, f"a table cell of {url} ends at {right}px, past {width}px"
            screenshot(page, f"{width}px-{'home' if url.endswith('/') else 'batch'}.png", full_page=True)
        box = page.get_by_role("button", name="Upload and score").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
    finally:
        context.close()


def test_without_javascript_upload_works_and_the_page_refreshes(
    browser: Browser, web_server: WebServer, runners, tmp_path
):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        batch_url = upload_through_form(page, web_server.base, write_csv(tmp_path, sample_texts(400)))
        assert progress_value(page) == 0
        assert "refreshes itself" in page.locator("#progress").inner_text()
        refresh = 'meta[http-equiv="refresh"]'
        assert page.locator(refresh).count() == 1
        loads: list[str] = []
        page.on("load", lambda loaded: loads.append(loaded.url))
        runners.start()
        # No script runs: the page's own refresh, a reload of the same page, brings the finished state.
        page.wait_for_selector("#summary-chart", timeout=60_000)
        assert progress_value(page) == 100
        assert loads and set(loads) == {batch_url}
        assert page.locator(refresh).count() == 0  # a finished batch's page no longer refreshes
        assert len(table_column(page, "id")) == 50
    finally:
        context.close()


def test_unknown_batch_is_a_404_page(page: Page, web_server: WebServer):
    answer = page.goto(f"{web_server.base}/batch/batch-{'0' * 32}")
    assert answer is not None and answer.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Batch not found"
    page.get_by_role("link", name="upload page").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Sentiment for every row of a CSV"
