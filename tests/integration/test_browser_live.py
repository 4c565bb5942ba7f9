"""A batch's page while it runs, in headless Chromium against gunicorn and real runners: rows and
the histogram of compound scores filling in from the event stream before the batch completes,
progress announced politely and the finish once, with no reload; the signed compound; a
cancelled batch's rows; figures that keep their place. Pages are checked by axe-core (the copy
axe-playwright-python ships), which must find nothing. test_browser_batch_pages.py has the rest
of the pages' parts, with these helpers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import RunnerProcesses, WebServer
from tests.integration.test_browser import BATCH_URL, screenshot

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
#: A runner slowed to this many seconds a chunk, so a batch is seen running.
SLOW = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.3"}


@pytest.fixture(params=[1280, 375], ids=["1280px", "375px"])
def width(request: pytest.FixtureRequest) -> int:
    return request.param


def open_page(browser: Browser, width: int = 1280) -> Page:
    return browser.new_context(viewport={"width": width, "height": 900}).new_page()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = open_page(browser)
    yield opened
    opened.context.close()


def upload(page: Page, base: str, path: Path) -> str:
    """Choose the file in the form, submit it, land on the batch page; the batch's id."""
    page.goto(f"{base}/")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_url(BATCH_URL)
    return page.url.rsplit("/", 1)[1]


def write(tmp_path: Path, texts: list[str], name: str = "reviews.csv", **kwargs: object) -> Path:
    path = tmp_path / name
    path.write_bytes(make_csv(texts, **kwargs))
    return path


def wait_until_final(page: Page) -> None:
    page.wait_for_selector("#summary-chart", timeout=120_000)


def no_axe_violations(page: Page) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def all_results(base: str, public_id: str) -> list[dict]:
    rows, url = [], f"{base}/batch/{public_id}/results?per_page=1000"
    while url:
        answer = requests.get(url, timeout=30).json()
        rows += answer["results"]
        url = f"{base}/batch/{public_id}/results?per_page=1000&after={answer['next_cursor']}"
        url = url if answer.get("next_cursor") and answer["results"] else ""
    return rows


def histogram_counts(page: Page) -> list[int]:
    return [
        int(text.replace(",", ""))
        for text in page.locator("#histogram-counts .bin-count").all_text_contents()
    ]


def expected_histogram(rows: list[dict]) -> list[int]:
    counts = [0] * 20
    for row in rows:
        if row["compound"] is not None:
            counts[min(19, (round(row["compound"] * 10000) + 10000) // 1000)] += 1
    return counts


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS colours as computed styles give them (rgb()/rgba())."""

    def luminance(color: str) -> float:
        red, green, blue = (int(part) / 255 for part in re.findall(r"[\d.]+", color)[:3])
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    darker, lighter = sorted((luminance(first), luminance(second)))
    return (lighter + 0.05) / (darker + 0.05)


def style(page: Page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"e => getComputedStyle(e).getPropertyValue('{prop}')")


def test_a_running_batch_fills_in_live_and_announces_its_finish_once(
    page: Page, web_server: WebServer, runners: RunnerProcesses, tmp_path: Path
):
    texts = sample_texts(3_000, seed=5)
    base = web_server.base
    public_id = upload(page, base, write(tmp_path, texts))
    # What the live region says, every time it changes; and a mark a reload would wipe out.
    page.evaluate(
        """() => {
            window.__said = [];
            window.__notReloaded = true;
            const region = document.getElementById("announce");
            new MutationObserver(() => window.__said.push(region.textContent))
                .observe(region, {childList: true, characterData: true, subtree: true});
        }"""
    )
    assert page.locator("#announce").get_attribute("aria-live") == "polite"
    runners.start(**SLOW)
    # Rows and histogram bars while the batch is still processing, as one look at the page.
    seen_running = page.wait_for_function(
        """() => document.getElementById("status").textContent === "processing"
               && document.querySelectorAll("#results-table tbody tr").length > 0
               && Number(document.getElementById("histogram-rows").textContent.replace(/,/g, "")) > 0
               && document.querySelectorAll("#results-table tbody tr").length""",
        timeout=60_000,
    )
    assert seen_running.json_value() > 0
    place = page.locator("#results [data-pager] .pager-place").first.inner_text()
    assert re.fullmatch(r"Rows 1–\d+ of [\d,]+ · page 1 of \d+", place), place
    no_axe_violations(page)
    screenshot(page, "live-batch-running.png", full_page=True)
    wait_until_final(page)
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"
    finishes = [said for said in page.evaluate("window.__said") if said.startswith("Finished")]
    assert finishes == ["Finished: the batch is completed, 3,000 rows scored."]
    assert any("% done" in said for said in page.evaluate("window.__said")), "progress is announced"
    # The first page, in file order, and the histogram of every row.
    ids = page.locator("#results-table td.id").all_inner_texts()
    assert ids == [f"r{i}" for i in range(1, 51)]
    rows = all_results(base, public_id)
    assert len(rows) == 3_000
    assert histogram_counts(page) == expected_histogram(rows)
    assert page.locator("#histogram-rows").inner_text() == "3,000"
    assert page.locator("#histogram rect[data-bin]").count() == 20
    no_axe_violations(page)
    # A finished batch's page, loaded afresh, shows the same histogram (counted by the server).
    page.reload()
    assert histogram_counts(page) == expected_histogram(rows)


def test_the_score_column_shows_the_signed_compound(page: Page, web_server: WebServer, runners, tmp_path):
    runners.start()
    texts = ["I love this, wonderful!", "Terrible, awful, the worst.", "It is a chair.", *sample_texts(60)]
    public_id = upload(page, web_server.base, write(tmp_path, texts))
    wait_until_final(page)
    compounds = {row["id"]: row["compound"] for row in all_results(web_server.base, public_id)}
    for row in page.locator("#results-table tbody tr").all():
        row_id = row.locator("td.id").inner_text()
        sentiment = row.locator(".sentiment").inner_text()
        shown = row.locator("td").nth(4).inner_text()
        assert shown == f"{compounds[row_id]:+.4f}"
        if sentiment == "negative":
            assert shown.startswith("-") and float(shown) <= -0.05
        if sentiment == "positive":
            assert shown.startswith("+") and float(shown) >= 0.05
    assert page.locator("#results-table th").nth(4).inner_text() == "Compound"


def test_a_cancelled_batch_shows_the_rows_already_scored(
    page: Page, web_server: WebServer, runners, tmp_path
):
    base = web_server.base
    public_id = upload(page, base, write(tmp_path, sample_texts(3_000)))
    runners.start(**SLOW)
    wait_for(lambda: requests.get(f"{base}/batch/{public_id}", timeout=10).json()["processed_count"] >= 200)
    cancel = page.get_by_role("button", name="Cancel this batch")
    cancel.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('status').textContent === 'cancelled'", timeout=30_000)
    # The chunks the runner held when the batch was cancelled still commit: wait for the last
    # (a results page is complete once no runner holds one of the batch's chunks).
    results = f"{base}/batch/{public_id}/results"
    wait_for(lambda: requests.get(results, timeout=10).json()["complete"], timeout=60, interval=0.5)
    batch = requests.get(f"{base}/batch/{public_id}", timeout=10).json()
    page.reload()
    scored = batch["processed_count"]
    assert 200 <= scored < 3_000
    assert f"after {scored:,} of 3,000 rows were scored" in page.locator("#cancelled-note").inner_text()
    assert page.locator("#results-table tbody tr").count() > 0
    assert page.locator("#results-table td.id").first.inner_text() == "r1"
    assert sum(histogram_counts(page)) == scored
    no_axe_violations(page)


def test_figures_keep_their_place_as_the_counts_grow(browser: Browser, web_server, runners, tmp_path, width):
    page = open_page(browser, width)
    try:
        upload(page, web_server.base, write(tmp_path, sample_texts(3_000)))
        runners.start(**SLOW)
        figures = "#progress .figures > div"
        assert "tabular-nums" in style(page, "#progress .figures dd", "font-variant-numeric")
        places, values = set(), set()

        def look() -> bool:
            boxes = page.eval_on_selector_all(
                figures,
                "divs => divs.map(d => { const b = d.getBoundingClientRect(); return [b.x, b.y, b.width]; })",
            )
            places.add(tuple(tuple(round(n, 1) for n in box) for box in boxes))
            values.add(page.locator("#done").inner_text())
            return len(values) >= 5 or page.locator("#summary-chart").count() > 0

        wait_for(look, timeout=90, interval=0.1)
        assert len(values) >= 3, values
        assert len(places) == 1, f"the figures moved: {places}"
    finally:
        page.context.close()
