"""Summaries by group (``GET /batch/<id>/summary?by=COLUMN``) against gunicorn and real runners:
equal to a recount of the result pages, ``limit`` folding into ``other``, problems for bad
parameters, 409 while processing, other keys refused, counted once under parallel first
requests, shown on the batch page, printed by the CLI, removed with the batch."""

from __future__ import annotations

import csv
import html
import io
import os
import re
import statistics
import subprocess
import sys
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

import webapp.groups
from core import batches
from core.batches import groups
from core.batches.queue import claim_chunk
from core.clients import Caller, create_key
from core.queries import q
from tests.helpers import sample_texts, wait_for
from tests.integration.helpers import process, score_everything, upload_file
from tests.scorers import POISON

#: The command from this checkout (``python -m cli``: what the console script runs).
SENTIMENT = (sys.executable, "-m", "cli")
REPO = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
#: product -> rows: ties (Modem/Router, Cable/antenna) are ordered by value in byte order.
PRODUCTS = {
    "Router": 60,
    "Modem": 60,
    "Switch": 40,
    "antenna": 30,
    "Cable": 30,
    "Hub": 20,
    "Ωmega": 12,
    "zeta": 5,
}
CHANNELS = ("email", "chat", "phone")
QUERY = "?text_column=body&id_column=ticket_id"


def help_desk(products: dict[str, int], seed: int, poison: int | None = None) -> bytes:
    """ticket_id,product,channel,body: each product's rows, channels in turn, texts varied."""
    values = [name for name, rows in products.items() for _ in range(rows)]
    texts = sample_texts(len(values), seed=seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ticket_id", "product", "channel", "body"])
    for n, (value, text) in enumerate(zip(values, texts, strict=True)):
        writer.writerow([f"T-{n}", value, CHANNELS[n % 3], f"{POISON} {text}" if n == poison else text])
    return out.getvalue().encode()


class Api:
    """requests against the gunicorn under test, as one key."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {key}"}

    def get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.get(self.base + path, headers=headers, timeout=60, **kwargs)

    def upload(self, data: bytes) -> str:
        answer = requests.post(
            f"{self.base}/batch/upload?text_column=body&id_column=ticket_id",
            files={"file": ("tickets.csv", data, "text/csv")},
            headers=self.headers,
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        return answer.json()["batch_id"]

    def finished(self, batch_id: str) -> dict:
        return wait_for(
            lambda: (b := self.get(f"/batch/{batch_id}").json())["status"] != "processing" and b, timeout=120
        )

    def results(self, batch_id: str) -> list[dict]:
        rows, path = [], f"/batch/{batch_id}/results?per_page=1000"
        while True:
            page = self.get(path).json()
            rows += page["results"]
            if not page["results"] or page["next_cursor"] is None:
                return rows
            path = f"/batch/{batch_id}/results?per_page=1000&after={page['next_cursor']}"


def recount(rows: list[dict], column: str) -> list[dict]:
    """Every group of ``column`` from the result rows, largest first, ties by value's bytes."""
    by_value: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_value[row["fields"][column]].append(row)
    groups = []
    for value, members in by_value.items():
        compounds = [r["compound"] for r in members if r["compound"] is not None]
        sentiments = [r["sentiment"] for r in members]
        groups.append(
            {
                "value": value,
                "count": len(members),
                **{s: sentiments.count(s) for s in ("positive", "negative", "neutral")},
                "failed": sentiments.count(None),
                "mean_compound": statistics.fmean(compounds) if compounds else None,
            }
        )
    return sorted(groups, key=lambda g: (-g["count"], g["value"].encode()))


def assert_same(answered: list[dict], expected: list[dict]) -> None:
    assert [g["value"] for g in answered] == [g["value"] for g in expected]
    for got, want in zip(answered, expected, strict=True):
        assert {k: v for k, v in got.items() if k != "mean_compound"} == {
            k: v for k, v in want.items() if k != "mean_compound"
        }
        assert got["mean_compound"] == pytest.approx(want["mean_compound"], abs=1.5e-4)


def folded(groups: list[dict]) -> dict:
    scored = sum(g["positive"] + g["negative"] + g["neutral"] for g in groups)
    total = sum(g["mean_compound"] * (g["positive"] + g["negative"] + g["neutral"]) for g in groups)
    return {
        "groups": len(groups),
        **{k: sum(g[k] for g in groups) for k in ("count", "positive", "negative", "neutral", "failed")},
        "mean_compound": total / scored if scored else None,
    }


def assert_problem(answer: requests.Response, status: int, slug: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    body = answer.json()
    assert (
        body["type"] == f"/problems/{slug}" and body["status"] == status and body["title"] and body["detail"]
    )
    return body


def kept_rows(db, batch_id: str, column: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return db.execute(
        "SELECT g.rank, g.value, g.row_count, g.computed_at FROM batch_group_summaries AS g "
        "JOIN batches AS b ON b.id = g.batch_id WHERE b.public_id = %s AND g.field_name = %s ORDER BY g.rank",
        (batch_id, column),
    ).fetchall()


def test_group_summaries_equal_a_recount_and_fold_past_the_limit(web_server, runners, db, tmp_path):
    alice = Api(web_server.base, create_key(db, "alice"))
    bob = Api(web_server.base, create_key(db, "bob"))
    batch_id = alice.upload(help_desk(PRODUCTS, seed=61, poison=7))
    # Still processing (no runner yet): 409, as the other final-only reads.
    waiting = assert_problem(alice.get(f"/batch/{batch_id}/summary?by=product"), 409, "batch-not-finished")
    assert waiting["status_of_batch"] == "processing"

    runners.start(SCORER="tests.scorers:poisoned", MAX_ATTEMPTS="1")
    batch = alice.finished(batch_id)
    assert (batch["status"], batch["failed_count"]) == ("completed_with_errors", 1)
    rows = alice.results(batch_id)
    assert len(rows) == sum(PRODUCTS.values())

    for column in ("product", "channel"):
        expected = recount(rows, column)
        answer = alice.get(f"/batch/{batch_id}/summary", params={"by": column, "limit": 1000})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["batch_id"], body["by"], body["limit"]) == (batch_id, column, 1000)
        assert_same(body["groups"], expected)
        assert body["other"] == {
            "groups": 0, "count": 0, "positive": 0, "negative": 0, "neutral": 0, "failed": 0,
            "mean_compound": None,
        }  # fmt: skip
        # Kept: every group and rank 0, counted once; later reads change nothing.
        kept = kept_rows(db, batch_id, column)
        assert [r[0] for r in kept] == list(range(len(expected) + 1))
        assert alice.get(f"/batch/{batch_id}/summary?by={column}").json()["groups"] == body["groups"][:50]
        assert kept_rows(db, batch_id, column) == kept

    expected = recount(rows, "product")
    assert [g["value"] for g in expected][:6] == ["Modem", "Router", "Switch", "Cable", "antenna", "Hub"]
    body = alice.get(f"/batch/{batch_id}/summary?by=product&limit=3").json()
    assert_same(body["groups"], expected[:3])
    other = folded(expected[3:])
    assert {k: v for k, v in body["other"].items() if k != "mean_compound"} == {
        k: v for k, v in other.items() if k != "mean_compound"
    }
    assert body["other"]["mean_compound"] == pytest.approx(other["mean_compound"], abs=1.5e-4)
    # A column named as the upload's text_column may be: ignoring case and surrounding spaces.
    assert alice.get(f"/batch/{batch_id}/summary", params={"by": " PRODUCT", "limit": 3}).json() == body

    # Bad parameters: problem+json 400s; another key: the batch does not exist for it.
    unknown = assert_problem(alice.get(f"/batch/{batch_id}/summary?by=ticket_id"), 400, "unknown-column")
    assert unknown["columns"] == ["product", "channel"] and "'product', 'channel'" in unknown["detail"]
    assert_problem(alice.get(f"/batch/{batch_id}/summary"), 400, "unknown-column")
    for limit in ("0", "1001", "-1", "ten", ""):
        bad = alice.get(f"/batch/{batch_id}/summary?by=product&limit={limit}")
        assert_problem(bad, 400, "invalid-parameter")
    assert_problem(bob.get(f"/batch/{batch_id}/summary?by=product"), 404, "batch-not-found")
    assert_problem(alice.get("/batch/batch-" + "0" * 32 + "/summary?by=product"), 404, "batch-not-found")

    check_the_page(alice, batch_id, rows)
    check_the_cli(web_server.base, alice, batch_id, expected, tmp_path)

    # Deleting the batch removes its kept groups with it (the reaper, in bounded steps).
    assert requests.delete(f"{web_server.base}/batch/{batch_id}", headers=alice.headers, timeout=30).ok
    runners.stop_all()
    batches.reap(db, 30)
    assert db.execute("SELECT count(*) FROM batch_group_summaries").fetchone()[0] == 0


def check_the_page(api: Api, batch_id: str, rows: list[dict]) -> None:
    """The batch page lists the most negative groups (lowest mean among those with 10 scored rows)
    of the first kept column, or of the column ``?by=`` names, with links to each column."""
    for by, query in (("product", ""), ("channel", "?by=channel")):
        page = api.get(f"/batch/{batch_id}{query}", headers={"Accept": "text/html"})
        assert page.status_code == 200
        section = re.search(r'<section class="panel" id="groups".*?</section>', page.text, re.S).group(0)
        assert f"Most negative groups by <q>{by}</q>" in section
        assert f'href="/batch/{batch_id}?by=product#groups"' in section
        shown = [
            html.unescape(v) for v in re.findall(r'<td class="text" data-label="[^"]*">(.*?)</td>', section)
        ]
        groups = [g for g in recount(rows, by) if g["positive"] + g["negative"] + g["neutral"] >= 10]
        worst = sorted(groups, key=lambda g: (round(g["mean_compound"], 4), -g["count"]))[:5]
        assert shown == [g["value"] for g in worst]
    # A browser sent to /summary lands on the page's groups.
    answer = api.get(
        f"/batch/{batch_id}/summary?by=channel", headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["Location"].endswith(
        f"/batch/{batch_id}?by=channel#groups"
    )


def check_the_cli(base: str, api: Api, batch_id: str, expected: list[dict], cwd: Path) -> None:
    """``sentiment summary ID --by product --limit 3``: a header, three groups, the rest in one line."""
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SENTIMENT_URL=base,
        SENTIMENT_KEY=api.headers["Authorization"].split()[1],
    )
    done = subprocess.run(
        [*SENTIMENT, "summary", batch_id, "--by", "product", "--limit", "3"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "product",
        "count",
        "positive",
        "negative",
        "neutral",
        "failed",
        "mean_compound",
    ]
    for line, group in zip(lines[1:4], expected[:3], strict=True):
        cells = line.split()
        assert cells[0] == group["value"]
        assert [int(c.replace(",", "")) for c in cells[1:6]] == [
            group[k] for k in ("count", "positive", "negative", "neutral", "failed")
        ]
        assert float(cells[6]) == pytest.approx(group["mean_compound"], abs=1.5e-4)
    assert lines[4].startswith(f"(other: {len(expected) - 3} values)")
    assert int(lines[4].split()[3].replace(",", "")) == sum(g["count"] for g in expected[3:])
    assert len(lines) == 5
    refused = subprocess.run(
        [*SENTIMENT, "summary", batch_id, "--by", "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "'product', 'channel'" in refused.stderr


def test_parallel_first_requests_count_once_and_the_others_are_told_to_retry(app, upload, db, monkeypatch):
    products = {f"p{n:03d}": 1 + n % 7 for n in range(400)}
    batch_id = upload(help_desk(products, seed=62), query=QUERY)["batch_id"]
    score_everything(db)
    assert kept_rows(db, batch_id, "product") == []
    asking = 12
    answered, all_others_answered, counts = [], threading.Event(), []
    real_count = groups.count

    def count(*args, **kwargs):  # the one pass over the batch, held until every other request answered
        counts.append(1)
        all_others_answered.wait(60)
        return real_count(*args, **kwargs)

    monkeypatch.setattr(groups, "count", count)
    start = threading.Barrier(asking)

    def ask(_: int) -> tuple[int, dict]:
        client = app.test_client()
        start.wait()
        answer = client.get(f"/batch/{batch_id}/summary?by=product&limit=1000")
        answered.append(answer.status_code)
        if len(answered) == asking - 1:
            all_others_answered.set()
        return answer.status_code, answer.get_json()

    with ThreadPoolExecutor(asking) as pool:
        answers = list(pool.map(ask, range(asking)))
    assert len(counts) == 1  # one request counted, while every other one was answered
    assert sorted(status for status, _ in answers) == [200] + [503] * (asking - 1)
    assert {body["type"] for status, body in answers if status == 503} <= {
        "/problems/summary-not-ready",
        "/problems/too-many-exports",
    }
    counted = next(body for status, body in answers if status == 200)
    assert len(counted["groups"]) == 400
    # Retried, they read what the first kept, and nothing counts again.
    again = app.test_client().get(f"/batch/{batch_id}/summary?by=product&limit=1000")
    assert again.status_code == 200 and again.get_json() == counted and len(counts) == 1
    kept = kept_rows(db, batch_id, "product")
    assert [r[0] for r in kept] == list(range(401))
    assert len({r[3] for r in kept}) == 1  # one transaction wrote them all


def _column_lock(database_url: str, db, batch_id: str, column: str):  # type: ignore[no-untyped-def]
    """A connection holding, in an open transaction, the lock of ``column``'s first count."""
    (internal,) = db.execute("SELECT id FROM batches WHERE public_id = %s", (batch_id,)).fetchone()
    holder = psycopg.connect(database_url)
    lock = {"lock_class": groups.LOCK_CLASS, "batch_id": internal, "field_name": column}
    assert holder.execute(q("batch_group_summaries_try_lock"), lock).fetchone()[0]
    return holder


def test_a_first_request_while_another_counts_the_column_is_a_503_at_once(client, upload, db, database_url):
    batch_id = upload(help_desk(PRODUCTS, seed=67), query=QUERY)["batch_id"]
    score_everything(db)
    holder = _column_lock(database_url, db, batch_id, "product")
    try:
        answer = client.get(f"/batch/{batch_id}/summary?by=product")
        assert answer.status_code == 503 and answer.content_type == PROBLEM
        assert answer.headers["Retry-After"] == "2"
        assert answer.get_json()["type"] == "/problems/summary-not-ready"
        # The page shows, with a note instead of the groups.
        page = client.get(f"/batch/{batch_id}?by=product", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "being counted for another request" in page.get_data(as_text=True)
        # Another column is not held up.
        assert client.get(f"/batch/{batch_id}/summary?by=channel").status_code == 200
        assert kept_rows(db, batch_id, "product") == []
    finally:
        holder.close()  # the lock goes with its transaction
    assert client.get(f"/batch/{batch_id}/summary?by=product").status_code == 200


def test_a_batch_deleted_and_reaped_while_counted_is_a_404_with_nothing_kept(client, upload, db, monkeypatch):
    batch_id = upload(help_desk(PRODUCTS, seed=68), query=QUERY)["batch_id"]
    score_everything(db)
    real_q = groups.q

    def q_deleting_before_the_keep(name: str) -> str:
        if name == "batch_group_summaries_keep":  # counted: delete the batch, and reap it, right now
            batches.delete(db, batch_id)
            db.execute("DELETE FROM batches WHERE public_id = %s", (batch_id,))  # the reaper's last step
        return real_q(name)

    monkeypatch.setattr(groups, "q", q_deleting_before_the_keep)
    answer = client.get(f"/batch/{batch_id}/summary?by=product")
    assert answer.status_code == 404 and answer.get_json()["type"] == "/problems/batch-not-found"
    assert db.execute("SELECT count(*) FROM batch_group_summaries").fetchone()[0] == 0


def test_a_batch_deleted_while_counted_is_a_404_with_nothing_kept(client, upload, db, monkeypatch):
    batch_id = upload(help_desk(PRODUCTS, seed=69), query=QUERY)["batch_id"]
    score_everything(db)
    real_q = groups.q

    def q_deleting_before_the_keep(name: str) -> str:
        if name == "batch_group_summaries_keep":  # counted: delete the batch (not yet reaped)
            batches.delete(db, batch_id)
        return real_q(name)

    monkeypatch.setattr(groups, "q", q_deleting_before_the_keep)
    answer = client.get(f"/batch/{batch_id}/summary?by=product")
    assert answer.status_code == 404
    assert db.execute("SELECT count(*) FROM batch_group_summaries").fetchone()[0] == 0


@pytest.mark.parametrize("query", ["by=product&by=channel", "by=product&limit=5&limit=6"])
def test_a_parameter_given_twice_is_a_400(client, upload, db, query):
    batch_id = upload(help_desk(PRODUCTS, seed=70), query=QUERY)["batch_id"]
    score_everything(db)
    answer = client.get(f"/batch/{batch_id}/summary?{query}")
    assert answer.status_code == 400 and answer.get_json()["type"] == "/problems/invalid-parameter"


def test_the_page_with_an_unknown_by_shows_with_a_note(client, upload, db):
    batch_id = upload(help_desk(PRODUCTS, seed=71), query=QUERY)["batch_id"]
    score_everything(db)
    page = client.get(f"/batch/{batch_id}?by=nope", headers={"Accept": "text/html"})
    text = html.unescape(page.get_data(as_text=True))
    assert page.status_code == 200
    assert "by='nope' names no kept column" in text and 'id="results"' in text
    assert 'id="groups-table"' not in text
    assert "?by=channel#groups" in text  # the columns to choose from


def test_a_cancelled_batch_is_counted_on_each_read_until_no_runner_holds_its_chunks(client, upload, db):
    batch_id = upload(help_desk(PRODUCTS, seed=63), query="?text_column=body&id_column=ticket_id")["batch_id"]
    chunk = claim_chunk(db, "test:0", 60)
    assert chunk is not None
    assert client.post(f"/batch/{batch_id}/cancel").status_code == 200
    # Final, but its chunk in hand still commits rows: counted, not kept.
    before = client.get(f"/batch/{batch_id}/summary?by=product").get_json()
    assert before["groups"] == [] and before["other"]["count"] == 0
    assert kept_rows(db, batch_id, "product") == []
    assert process(db, chunk)
    after = client.get(f"/batch/{batch_id}/summary?by=product").get_json()
    assert sum(g["count"] for g in after["groups"]) == 100  # the one chunk's rows
    assert len(kept_rows(db, batch_id, "product")) == len(after["groups"]) + 1


def test_the_page_of_a_large_batch_shows_groups_once_counted(client, upload, db, monkeypatch):
    batch_id = upload(help_desk(PRODUCTS, seed=64), query="?text_column=body&id_column=ticket_id")["batch_id"]
    score_everything(db)
    monkeypatch.setattr(webapp.groups, "PAGE_COUNTS_UP_TO", 100)
    page = client.get(f"/batch/{batch_id}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "show here once they have been" in page and 'id="groups-table"' not in page
    assert kept_rows(db, batch_id, "product") == []
    assert client.get(f"/batch/{batch_id}/summary?by=product").status_code == 200
    page = client.get(f"/batch/{batch_id}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'id="groups-table"' in page


def test_row_security_shows_kept_groups_to_their_owner_only(app, client, upload, db):
    keys = {name: create_key(db, name) for name in ("alice", "bob")}
    query = "?text_column=body&id_column=ticket_id"
    batch_id = upload(help_desk(PRODUCTS, seed=66), query=query, key=keys["alice"])["batch_id"]
    score_everything(db)
    answer = client.get(
        f"/batch/{batch_id}/summary?by=channel", headers={"Authorization": f"Bearer {keys['alice']}"}
    )
    assert answer.status_code == 200
    pool = app.extensions["db_pool"]
    seen = {}
    for name in ("alice", "bob"):
        with pool.caller_connection(Caller(name, name, admin=False)) as conn:
            # No owner filter: whatever comes back is what the policies let through.
            seen[name] = conn.execute("SELECT count(*) FROM batch_group_summaries").fetchone()[0]
    assert seen == {"alice": 4, "bob": 0}  # three channels and rank 0


def test_a_first_count_takes_an_export_slot_and_a_kept_read_none(database_url, db):
    app = webapp.create_app({"database_url": database_url, "migrate_on_start": False, "max_exports": 1})
    try:
        client = app.test_client()
        batch_id = upload_file(client, help_desk(PRODUCTS, seed=72), query=QUERY)["batch_id"]
        score_everything(db)
        assert client.get(f"/batch/{batch_id}/summary?by=channel").status_code == 200  # counted, kept
        export = client.get(f"/batch/{batch_id}/results.csv", buffered=False)  # the worker's one slot
        assert export.status_code == 200
        busy = client.get(f"/batch/{batch_id}/summary?by=product")
        assert busy.status_code == 503 and busy.get_json()["type"] == "/problems/too-many-exports"
        assert "Retry-After" in busy.headers
        assert kept_rows(db, batch_id, "product") == []
        assert client.get(f"/batch/{batch_id}/summary?by=channel").status_code == 200  # kept: no slot
        export.close()
        assert client.get(f"/batch/{batch_id}/summary?by=product").status_code == 200
    finally:
        app.extensions["db_pool"].close()
