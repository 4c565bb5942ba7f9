"""The batch pages' parts as a user finds them, in headless Chromium against gunicorn and real
runners: the id column, the set-aside rows' pages, the pagers, contrast, the recent batches, a
refused upload's address and the keyboard, at 1280 and 375 px where the layout matters, each page
checked by axe-core. The live page is in test_browser_live.py, whose helpers these share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page

from tests.helpers import make_csv, sample_texts
from tests.integration.conftest import WebServer
from tests.integration.test_browser import screenshot
from tests.integration.test_browser_live import (
    BROWSER_ACCEPT,
    contrast,
    no_axe_violations,
    open_page,
    style,
    upload,
    wait_until_final,
    write,
)
from tests.integration.test_group_summaries import PRODUCTS, help_desk


@pytest.fixture(params=[1280, 375], ids=["1280px", "375px"])
def width(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = open_page(browser)
    yield opened
    opened.context.close()


def test_short_ids_stay_on_one_line_at_1280(page: Page, web_server: WebServer, runners, tmp_path):
    runners.start()
    texts = [text + " " + "word " * 80 for text in sample_texts(60)]  # long texts squeeze the id column
    upload(page, web_server.base, write(tmp_path, texts, ids=[str(i) for i in range(1, 61)]))
    wait_until_final(page)
    for row_id in ("10", "11", "12"):
        cell = page.locator("#results-table td.id", has_text=re.compile(f"^{row_id}$"))
        lines = cell.evaluate(
            "cell => { const range = document.createRange(); range.selectNodeContents(cell);"
            " return new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size; }"
        )
        assert lines == 1, f"id {row_id} takes {lines} lines"


def test_set_aside_rows_have_pages_linked_from_the_top(
    browser: Browser, web_server, runners, tmp_path, width
):
    runners.start()
    texts = [f"row {i} is fine" if i % 4 == 0 else "" for i in range(480)]  # 360 empty texts set aside
    page = open_page(browser, width)
    try:
        public_id = upload(page, web_server.base, write(tmp_path, texts))
        wait_until_final(page)
        link = page.locator("#batch-head").get_by_role("link", name="360 rows set aside at upload")
        assert link.bounding_box()["y"] < page.locator("#results").bounding_box()["y"]
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/batch/{public_id}/set-aside")
        assert page.get_by_role("heading", level=1).inner_text() == "Rows set aside at upload"
        top = page.get_by_role("navigation", name="Set-aside rows pages (top)")
        assert top.locator(".pager-place").inner_text() == "Rows 1–50 of 360 · page 1 of 8"
        lines = page.locator("#set-aside-table td.num").all_inner_texts()
        assert lines[:3] == ["3", "4", "5"] and len(lines) == 50  # line 2 holds the first, kept row
        no_axe_violations(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        top.get_by_role("link", name="Last »").click()
        assert top.locator(".pager-place").inner_text() == "Rows 351–360 of 360 · page 8 of 8"
        page.locator("#jump-top").fill("3")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert top.locator(".pager-place").inner_text() == "Rows 101–150 of 360 · page 3 of 8"
        assert (
            requests.get(f"{web_server.base}/batch/{public_id}/errors", timeout=10).json()["total_errors"]
            == 360
        )
    finally:
        page.context.close()


def test_the_set_aside_list_url_answers_browsers_with_the_page(web_server: WebServer, runners, tmp_path):
    runners.start()
    data = make_csv(["fine", "", "also fine", ""])
    public_id = requests.post(
        f"{web_server.base}/batch/upload", files={"file": ("x.csv", data)}, timeout=30
    ).json()["batch_id"]
    url = f"{web_server.base}/batch/{public_id}/errors"
    assert requests.get(url, timeout=10).headers["Content-Type"].startswith("application/json")
    page = requests.get(url + "?per_page=1", headers={"Accept": BROWSER_ACCEPT}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html") and "Rows set aside at upload" in page.text
    assert page.history[0].status_code == 303
    assert page.url.endswith(f"/batch/{public_id}/set-aside?per_page=1")


def test_the_pager_says_where_you_are_and_jumps(browser: Browser, web_server, runners, tmp_path, width):
    runners.start()
    page = open_page(browser, width)
    try:
        upload(page, web_server.base, write(tmp_path, sample_texts(1_230)))
        wait_until_final(page)
        top = page.get_by_role("navigation", name="Results pages (top)")
        bottom = page.get_by_role("navigation", name="Results pages (bottom)")
        assert top.locator(".pager-place").inner_text() == "Rows 1–50 of 1,230 · page 1 of 25"
        assert bottom.locator(".pager-place").inner_text() == top.locator(".pager-place").inner_text()
        # The pager above the table: Next without scrolling past fifty rows.
        assert (
            top.get_by_role("link", name="Next →").bounding_box()["y"]
            < page.locator("#results-table").bounding_box()["y"]
        )
        no_axe_violations(page)
        top.get_by_role("link", name="Last »").click()
        assert top.locator(".pager-place").inner_text() == "Rows 1,201–1,230 of 1,230 · page 25 of 25"
        assert page.locator("#results-table td.id").all_inner_texts() == [f"r{i}" for i in range(1201, 1231)]
        assert top.get_by_role("link", name="Next →").count() == 0
        top.get_by_role("link", name="« First").click()
        assert top.locator(".pager-place").inner_text().startswith("Rows 1–50 of 1,230")
        # The jump, from the keyboard: Tab to the page field, type, Enter.
        page.locator("#jump-top").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type("7")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert top.locator(".pager-place").inner_text() == "Rows 301–350 of 1,230 · page 7 of 25"
        assert page.locator("#results-table td.id").first.inner_text() == "r301"
        top.get_by_role("link", name="Next →").click()
        assert top.locator(".pager-place").inner_text() == "Rows 351–400 of 1,230 · page 8 of 25"
        # One sentiment's pages go by cursor, and still know which page they are.
        page.get_by_role("link", name="Negative", exact=True).click()
        place = top.locator(".pager-place").inner_text()
        assert re.fullmatch(r"Rows 1–50 of [\d,]+ · page 1 of \d+", place), place
        top.get_by_role("link", name="Next →").click()
        assert re.fullmatch(
            r"Rows 51–100 of [\d,]+ · page 2 of \d+", top.locator(".pager-place").inner_text()
        )
        assert set(page.locator("#results-table .sentiment").all_inner_texts()) == {"negative"}
        screenshot(page, f"pager-{width}px.png")
    finally:
        page.context.close()


def test_focus_ring_on_the_header_and_control_borders_have_3_to_1(
    page: Page, web_server: WebServer, runners, tmp_path
):
    runners.start()
    upload(page, web_server.base, write(tmp_path, sample_texts(120)))
    wait_until_final(page)
    header = style(page, "header.site", "background-color")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")  # the brand, on the dark header
    assert page.evaluate("document.activeElement.className") == "brand"
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert contrast(ring, header) >= 3, (ring, header)
    panel = style(page, "#results", "background-color")
    pill = style(page, ".filters a:not([aria-current])", "border-top-color")
    assert contrast(pill, panel) >= 3, (pill, panel)
    page.goto(f"{web_server.base}/")
    zone_border = style(page, "#dropzone", "border-top-color")
    assert contrast(zone_border, style(page, "#dropzone", "background-color")) >= 3
    assert contrast(zone_border, style(page, "section.panel", "background-color")) >= 3
    no_axe_violations(page)


def test_recent_batches_show_rows_set_aside(browser: Browser, web_server, runners, tmp_path, width):
    runners.start()
    texts = ["" if i % 3 == 0 else f"text {i} is good" for i in range(45)]  # 15 set aside
    page = open_page(browser, width)
    try:
        upload(page, web_server.base, write(tmp_path, texts))
        wait_until_final(page)
        page.goto(f"{web_server.base}/")
        cell = page.locator("table.batches td.num").first
        assert re.sub(r"\s+", " ", cell.inner_text()).strip() == "45 / 45 · 15 set aside"
        if width > 600:  # on narrow screens each row is a card and the header is for screen readers
            assert style(page, "table.batches th.num", "text-align") == "right"
            assert page.locator("table.batches th").nth(2).inner_text() == "Rows"
        no_axe_violations(page)
    finally:
        page.context.close()


def test_a_refused_upload_leaves_an_address_that_reloads_safely(page: Page, web_server: WebServer, tmp_path):
    page.goto(f"{web_server.base}/")
    page.get_by_label("Strict: refuse the whole file if any row is bad").check()
    page.get_by_label("CSV file").set_input_files(str(write(tmp_path, ["fine", ""])))
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_selector("#upload-problem")
    assert page.url == f"{web_server.base}/"
    no_axe_violations(page)
    requests_sent: list[tuple[str, str]] = []
    page.on("request", lambda sent: requests_sent.append((sent.method, sent.url)))
    page.reload()
    assert requests_sent[0] == ("GET", f"{web_server.base}/")
    assert page.locator("#upload-problem").count() == 0
    assert page.get_by_role("heading", level=1).inner_text() == "Sentiment for every row of a CSV"


def test_every_control_of_a_finished_batch_is_reached_and_shown_by_the_keyboard(
    page: Page, web_server: WebServer, runners, tmp_path
):
    runners.start()
    upload(page, web_server.base, write(tmp_path, [*sample_texts(130), "", ""]))
    wait_until_final(page)
    page.goto(page.url)  # from the top
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const e = document.activeElement; const s = getComputedStyle(e);
                       const name = e.textContent.replace(/\\s+/g, " ").trim().slice(0, 20) || e.id;
                       return [e.tagName, name, s.outlineStyle, s.outlineWidth]; }"""
        )
        if focused[0] == "BODY":  # past the last control, before the first one comes round again
            continue
        reached.append(focused[1])
        assert focused[2] == "solid" and focused[3] != "0px", focused
    for wanted in ("Skip to content", "2 rows set aside", "CSV", "Negative", "Next →", "Last »", "jump-top"):
        assert any(name.startswith(wanted) for name in reached), (wanted, reached)
    page.keyboard.press("Escape")
    no_axe_violations(page)


def test_a_finished_batch_with_kept_columns_shows_its_most_negative_groups(
    browser: Browser, web_server, runners, tmp_path, width
):
    runners.start()
    answer = requests.post(
        f"{web_server.base}/batch/upload?text_column=body&id_column=ticket_id",
        files={"file": ("tickets.csv", help_desk(PRODUCTS, seed=65), "text/csv")},
        timeout=60,
    )
    public_id = answer.json()["batch_id"]
    page = open_page(browser, width)
    try:
        page.goto(f"{web_server.base}/batch/{public_id}")
        wait_until_final(page)
        groups = page.locator("#groups")
        assert groups.get_by_role("heading").inner_text() == "Most negative groups by product"
        summary = requests.get(
            f"{web_server.base}/batch/{public_id}/summary?by=product&limit=1000", timeout=60
        )
        eligible = [g for g in summary.json()["groups"] if g["positive"] + g["negative"] + g["neutral"] >= 10]
        worst = sorted(eligible, key=lambda g: (g["mean_compound"], -g["count"]))[:5]
        assert page.locator("#groups-table tbody td.text").all_inner_texts() == [g["value"] for g in worst]
        assert page.locator("#groups-table tbody tr").first.locator("td").last.inner_text() == (
            f"{worst[0]['mean_compound']:+.4f}"
        )
        no_axe_violations(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        groups.get_by_role("navigation", name="Group by column").get_by_role("link", name="channel").click()
        assert page.locator("#groups h2").inner_text() == "Most negative groups by channel"
        assert page.url.endswith(f"/batch/{public_id}?by=channel#groups")
        screenshot(page, f"batch-groups-{width}.png")
    finally:
        page.context.close()
