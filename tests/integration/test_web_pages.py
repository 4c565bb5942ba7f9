"""The pages for browsers, through Flask's test client: content negotiation on the
shared URLs, the refused-upload form, the 404 page, escaping, paging links and
the state a page shows without JavaScript. What needs a real browser (scripts,
drag-and-drop, layout, downloads) is in test_browser.py.
"""

from __future__ import annotations

import io
import re
from html import unescape
from html.parser import HTMLParser

from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import assert_nothing_written, assert_problem, process_next, score_everything

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
HOSTILE = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    "\"'><b>not bold</b>",
    "tom & jerry &amp; friends",
]


class Page(HTMLParser):
    """The parts of a page the tests look at: element attributes by id, links, text by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.links: dict[str, str] = {}
        self.cells: list[str] = []
        self.scripts: list[str] = []
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._link_text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.by_id[attributes["id"] or ""] = attributes
        if tag == "a":
            self._href, self._link_text = attributes.get("href"), []
        if tag == "td":
            self._cell = []
        if tag == "script":
            self.scripts.append(attributes.get("src") or "inline")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links["".join(self._link_text).strip()] = self._href
            self._href = None
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._link_text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def browser_post(client, data: bytes, **fields: str):
    form = {**fields, "file": (io.BytesIO(data), "reviews.csv")}
    return client.post("/batch/upload", data=form, content_type="multipart/form-data", headers=BROWSER)


def test_home_page_has_a_labelled_form_and_no_inline_script(client):
    answer = client.get("/", headers=BROWSER)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    page = Page(html)
    form = page.by_id["upload-form"]
    assert form["action"] == "/batch/upload" and form["enctype"] == "multipart/form-data"
    for field in ("file", "strict", "encoding"):
        assert f'<label for="{field}">' in html, field
    # The options precede the file: the server reads the form in order, file last.
    assert html.index('name="strict"') < html.index('name="file"')
    for field in ("text_column", "id_column", "sheet"):  # typed without script, before the file
        assert html.index(f'name="{field}"') < html.index('name="file"'), field
    assert page.scripts == ["/static/file_header.js", "/static/columns.js", "/static/upload.js"]
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "No batches yet" in html


def test_curl_still_gets_json_from_the_shared_urls(client):
    data = make_csv(sample_texts(10))
    for accept in (None, "*/*", "application/json"):
        headers = {"Accept": accept} if accept else {}
        answer = client.post(
            "/batch/upload",
            data={"file": (io.BytesIO(data), "x.csv")},
            content_type="multipart/form-data",
            headers=headers,
        )
        assert answer.status_code == 202 and answer.mimetype == "application/json"
        status = client.get(answer.headers["Location"], headers=headers)
        assert status.mimetype == "application/json" and status.get_json()["total_count"] == 10
        assert "Accept" in status.headers["Vary"]
    missing = client.get("/batch/batch-" + "0" * 32, headers={"Accept": "*/*"})
    assert_problem(missing, 404, "batch-not-found")


def test_browser_upload_answers_303_to_the_batch_page(client, db):
    answer = browser_post(client, make_csv(sample_texts(250)))
    assert answer.status_code == 303
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    assert answer.headers["Location"] == f"/batch/{public_id}"
    page = client.get(answer.headers["Location"], headers=BROWSER)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Accept" in page.headers["Vary"]
    html = page.get_data(as_text=True)
    bar = Page(html).by_id["progress-bar"]
    assert bar["role"] == "progressbar"
    assert (bar["aria-valuenow"], bar["aria-valuemin"], bar["aria-valuemax"]) == ("0.0", "0", "100")
    assert bar["aria-valuetext"] == "0 of 250 rows (0.0%)"
    assert "reviews.csv" in html
    # Without JavaScript the page refreshes itself while the batch runs.
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    assert "/static/batch.js" in html


def test_the_batch_page_shows_the_current_state_on_each_load(client, db):
    browser_post(client, make_csv(sample_texts(300)))
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    process_next(db)
    html = client.get(f"/batch/{public_id}", headers=BROWSER).get_data(as_text=True)
    bar = Page(html).by_id["progress-bar"]
    assert bar["aria-valuenow"] == "33.3" and bar["aria-valuetext"] == "100 of 300 rows (33.3%)"
    score_everything(db)
    html = client.get(f"/batch/{public_id}", headers=BROWSER).get_data(as_text=True)
    page = Page(html)
    assert page.by_id["progress-bar"]["aria-valuenow"] == "100.0"
    assert "refresh" not in html and "batch.js" not in html  # done: nothing left to watch
    assert "summary-chart" in page.by_id and "results" in page.by_id
    counts = dict(
        db.execute("SELECT vader_label(compound), count(*) FROM batch_results GROUP BY 1").fetchall()
    )
    for sentiment, count in counts.items():
        match = re.search(
            rf'data-sentiment="{sentiment}">.*?<span class="count">([\d,]+)</span> \(([\d.]+)%\)', html, re.S
        )
        assert match, sentiment
        assert int(match[1].replace(",", "")) == count
        assert float(match[2]) == round(100 * count / 300, 1)
    assert page.links["CSV"] == f"/batch/{public_id}/results.csv"
    assert page.links["NDJSON"] == f"/batch/{public_id}/results.ndjson"


def test_results_pages_go_forward_and_back_with_filters(client, db):
    texts = sample_texts(130)
    browser_post(client, make_csv(texts))
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    score_everything(db)

    def rows_of(url: str) -> tuple[list[str], Page]:
        page = Page(client.get(url, headers=BROWSER).get_data(as_text=True))
        # Five cells a row: row number, id, text, sentiment, score.
        return page.cells[1::5], page

    first, page = rows_of(f"/batch/{public_id}?per_page=50")
    assert first == [f"r{i}" for i in range(1, 51)]
    assert "← Previous" not in page.links
    second, page = rows_of(unescape(page.links["Next →"]))
    assert second == [f"r{i}" for i in range(51, 101)]
    third, page = rows_of(unescape(page.links["Next →"]))
    assert third == [f"r{i}" for i in range(101, 131)] and "Next →" not in page.links
    back, page = rows_of(unescape(page.links["← Previous"]))
    assert back == second
    back, page = rows_of(unescape(page.links["← Previous"]))
    assert back == first and "← Previous" not in page.links

    negative = "SELECT row_number FROM batch_results WHERE vader_label(compound) = 'negative'"
    negatives = {f"r{n}" for (n,) in db.execute(negative)}
    seen: list[str] = []
    url = f"/batch/{public_id}?sentiment=negative&per_page=10"
    while url:
        ids, page = rows_of(url)
        seen += ids
        assert set(page.cells[3::5]) <= {"negative"}
        url = unescape(page.links["Next →"]) if "Next →" in page.links else ""
    assert set(seen) == negatives and len(seen) == len(negatives)


def test_refused_browser_upload_shows_the_form_with_the_problem(client, db):
    bad = b"id,text\n1,fine\n2,two,fields too many\n"
    answer = browser_post(client, bad, strict="true", encoding="cp1252")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    problem = html[html.index('id="upload-problem"') :]
    assert "<h2>Invalid upload</h2>" in problem
    assert "line 3" in problem.lower()
    assert "{" not in problem.split("</div>")[0]  # words, not a JSON dump
    page = Page(html)
    assert "checked" in page.by_id["strict"]  # the choices survive; the file is chosen again
    assert re.search(r'<option value="cp1252" selected>', html)
    assert_nothing_written(db)


def test_option_sent_after_the_file_is_refused_not_ignored(client, db):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
        b"id,text\n1,ok\n2,a,b\n"
        b'\r\n--b\r\nContent-Disposition: form-data; name="strict"\r\n\r\ntrue\r\n--b--\r\n'
    )
    answer = client.post("/batch/upload", data=body, content_type="multipart/form-data; boundary=b")
    problem = assert_problem(answer, 400, "option-after-file")
    assert "'strict'" in problem["detail"]
    assert_nothing_written(db)


def test_unknown_batch_is_a_404_page_for_browsers(client):
    answer = client.get("/batch/batch-" + "f" * 32, headers=BROWSER)
    assert answer.status_code == 404 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "<h1" in html and "Batch not found" in html and "upload page" in html
    bad_cursor = client.get("/batch/batch-" + "f" * 32 + "/results?after=x", headers=BROWSER)
    assert bad_cursor.status_code == 404 and bad_cursor.mimetype == "text/html"


def test_tampered_page_cursor_is_a_400_page(client, db):
    browser_post(client, make_csv(sample_texts(120)))
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    score_everything(db)
    answer = client.get(f"/batch/{public_id}?after=forged", headers=BROWSER)
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "not valid" in answer.get_data(as_text=True)


def test_user_text_is_escaped_everywhere(client, db):
    ids = ["<i>id</i>", *(f"h{i}" for i in range(1, len(HOSTILE)))]
    data = make_csv(HOSTILE, ids=ids)
    client.post(
        "/batch/upload",
        data={"file": (io.BytesIO(data), "<script>name</script>.csv")},
        content_type="multipart/form-data",
        headers=BROWSER,
    )
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    score_everything(db)
    for url in ("/", f"/batch/{public_id}"):
        html = client.get(url, headers=BROWSER).get_data(as_text=True)
        assert "<script>" not in html.replace('<script src="/static/upload.js" defer></script>', "")
        assert "<img" not in html and "<b>" not in html and "<i>" not in html
        assert "&lt;script&gt;name&lt;/script&gt;.csv" in html
    page = Page(client.get(f"/batch/{public_id}", headers=BROWSER).get_data(as_text=True))
    assert page.cells[2::5] == HOSTILE  # shown literally, as uploaded
    assert page.cells[1] == "<i>id</i>"


def test_recent_batches_are_listed_newest_first_with_an_older_link(client, db):
    for count in (101, 102, 103):
        browser_post(client, make_csv(sample_texts(count)))
    html = client.get("/?per_page=2", headers=BROWSER).get_data(as_text=True)
    page = Page(html)
    assert re.findall(r"([\d,]+)\s*/ ([\d,]+)</td>", html) == [("0", "103"), ("0", "102")]
    older = client.get(unescape(page.links["Older batches"]), headers=BROWSER).get_data(as_text=True)
    assert re.findall(r"([\d,]+)\s*/ ([\d,]+)</td>", older) == [("0", "101")]
    assert "Newest batches" in older


def test_cancel_from_the_page_returns_to_it(client, db):
    browser_post(client, make_csv(sample_texts(500)))
    public_id = db.execute("SELECT public_id FROM batches").fetchone()[0]
    answer = client.post(f"/batch/{public_id}/cancel", headers=BROWSER)
    assert answer.status_code == 303 and answer.headers["Location"] == f"/batch/{public_id}"
    html = client.get(f"/batch/{public_id}", headers=BROWSER).get_data(as_text=True)
    assert "cancelled" in html and "Cancel this batch" not in html
