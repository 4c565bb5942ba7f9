"""A final batch's summary of compound scores: mean and histogram, counted once and kept."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import statistics
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from core.batches import partitions, summaries
from core.batches.ingest import new_public_id
from core.batches.queue import claim_chunk
from core.batches.summaries import EDGES
from core.queries import q
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import process
from tests.scorers import POISON

REPO = Path(__file__).resolve().parents[2]
#: Scores on the bins' edges and either side of them, each stated to the scorer.
EDGE_SCORES = ("-1", "-0.9", "-0.8999", "-0.0001", "0", "0.05", "0.0999", "0.1", "0.9999", "1", "1")
#: Their bins by hand: bin i holds [-1 + i/10, -0.9 + i/10), the last one 1 as well.
EDGE_BINS = {0: 1, 1: 2, 9: 1, 10: 3, 11: 1, 19: 3}


def _recount(compounds: list[float]) -> list[int]:
    """Rows per bin, counted in exact decimals from each score's four decimals."""
    counts = [0] * 20
    for compound in compounds:
        exact = Decimal(repr(compound)).quantize(Decimal("0.0001"))
        counts[min(19, int((exact + 1) * 10))] += 1
    return counts


def _results(client, batch_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    rows, url = [], f"/batch/{batch_id}/results?per_page=1000"
    while True:
        page = client.get(url).get_json()
        rows += page["results"]
        if not page["results"] or page["next_cursor"] is None:
            return rows
        url = f"/batch/{batch_id}/results?per_page=1000&after={page['next_cursor']}"


def _kept(db, batch_id: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return db.execute(
        "SELECT s.histogram, s.computed_at FROM batch_summaries AS s JOIN batches AS b ON b.id = s.batch_id "
        "WHERE b.public_id = %s",
        (batch_id,),
    ).fetchall()


def test_histogram_and_mean_equal_a_recount_and_are_kept(client, upload, runners, db):
    texts = [f"compound={score}" for score in EDGE_SCORES] + [f"a {POISON} row"]
    edges_only = upload(make_csv(texts))["batch_id"]
    mixed = upload(make_csv(texts + sample_texts(700, seed=231)))["batch_id"]
    runners.start(SCORER="tests.scorers:stated", MAX_ATTEMPTS="1")
    # The runner that completes a batch keeps its summary: it is there before anyone asks.
    kept_by_runner = wait_for(lambda: _kept(db, mixed) and _kept(db, edges_only), timeout=60)
    assert kept_by_runner

    status = client.get(f"/batch/{edges_only}").get_json()
    assert (status["status"], status["failed_count"]) == ("completed_with_errors", 1)
    counts = status["summary"]["histogram"]["counts"]
    assert counts == [EDGE_BINS.get(i, 0) for i in range(20)]
    assert status["summary"]["histogram"]["edges"] == [pytest.approx(-1 + i / 10) for i in range(21)]
    assert status["summary"]["histogram"]["edges"] == list(EDGES)
    assert status["summary"]["mean_compound"] == pytest.approx(
        statistics.fmean(map(float, EDGE_SCORES)), abs=5e-5
    )

    status = client.get(f"/batch/{mixed}").get_json()
    rows = _results(client, mixed)
    compounds = [r["compound"] for r in rows if r["compound"] is not None]
    assert len(rows) == len(compounds) + 1 == 712
    assert status["summary"]["histogram"]["counts"] == _recount(compounds)
    assert sum(status["summary"]["histogram"]["counts"]) == 711
    assert status["summary"]["mean_compound"] == pytest.approx(statistics.fmean(compounds), abs=5e-5)

    # Later reads (JSON and the page) read the kept summary: no new row, the same time.
    before = _kept(db, mixed)
    client.get(f"/batch/{mixed}")
    page = client.get(f"/batch/{mixed}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert _kept(db, mixed) == before and len(before) == 1
    shown = re.search(r'data-counts="([^"]*)"', page).group(1)
    assert html.unescape(shown) == ",".join(map(str, status["summary"]["histogram"]["counts"]))


def test_a_missing_summary_is_kept_by_the_first_read(client, upload, runners, db):
    batch_id = upload(make_csv(sample_texts(300, seed=232)))["batch_id"]
    runners.start()
    wait_for(lambda: _kept(db, batch_id))
    first = client.get(f"/batch/{batch_id}").get_json()["summary"]
    db.execute("DELETE FROM batch_summaries")
    assert client.get(f"/batch/{batch_id}").get_json()["summary"] == first
    kept = _kept(db, batch_id)
    assert len(kept) == 1
    assert client.get(f"/batch/{batch_id}").get_json()["summary"] == first
    assert _kept(db, batch_id) == kept


def test_a_cancelled_batch_is_kept_once_no_runner_holds_its_chunks(client, upload, db):
    batch_id = upload(make_csv(sample_texts(250, seed=233)))["batch_id"]
    chunk = claim_chunk(db, "test:0", 60)
    assert chunk is not None
    assert client.post(f"/batch/{batch_id}/cancel").status_code == 200
    # Its chunk in hand still commits rows: counted on each read, not kept.
    assert client.get(f"/batch/{batch_id}").get_json()["summary"]["histogram"]["counts"] == [0] * 20
    assert _kept(db, batch_id) == []
    assert process(db, chunk)
    summary = client.get(f"/batch/{batch_id}").get_json()["summary"]
    assert sum(summary["histogram"]["counts"]) == 100
    assert len(_kept(db, batch_id)) == 1


def test_a_batch_deleted_after_its_count_keeps_nothing_and_raises_nothing(client, upload, db):
    batch_id = upload(make_csv(sample_texts(150, seed=234)))["batch_id"]
    internal = db.execute("SELECT id FROM batches WHERE public_id = %s", (batch_id,)).fetchone()[0]
    counted = {"scored_count": 150, "mean_compound": 0.25, "histogram": [0] * 19 + [150]}
    # Marked deleted since it was counted (DELETE /batch/<id>), then gone (the reaper): the count
    # is kept for neither, and neither is an error (a foreign key violation in the runner's log).
    assert client.post(f"/batch/{batch_id}/cancel").status_code == 200
    assert client.delete(f"/batch/{batch_id}").status_code == 204
    db.execute("DELETE FROM batch_summaries")  # kept by the cancel
    assert db.execute(q("batch_summaries_keep"), {"batch_id": internal, **counted}).fetchone() is None
    assert summaries.keep(db, internal) is False  # counted as settled, and said not kept
    gone = db.execute("SELECT max(id) + 1 FROM batches").fetchone()[0]
    assert db.execute(q("batch_summaries_keep"), {"batch_id": gone, **counted}).fetchone() is None
    assert db.execute("SELECT count(*) FROM batch_summaries").fetchone()[0] == 0


def _edge_cases() -> list[float]:
    """Every four-decimal score, every midpoint between two of them, and each edge's neighbours."""
    scores = [k / 10_000 for k in range(-10_000, 10_001)]
    scores += [(k + 0.5) / 10_000 for k in range(-10_000, 10_000)]
    for edge in EDGES:
        scores += [math.nextafter(edge, -2.0), math.nextafter(edge, 2.0)]
    return [s for s in scores if -1 <= s <= 1]


def _js_rule(compound: float) -> int:
    """batch_view.js's binOf in Python: Math.round rounds halves up, towards +infinity."""
    scaled = compound * 10_000
    rounded = math.floor(scaled) + (scaled - math.floor(scaled) >= 0.5)
    return min(19, (rounded + 10_000) // 1000)


def _real_js_bins(scores: list[float]) -> list[int]:
    """The bins batch_view.js's own binOf gives, run by node."""
    script = (REPO / "webapp/static/batch_view.js").read_text()
    bin_of = re.search(r"  function binOf\(compound\) \{.*?\n  \}\n", script, re.S).group(0)
    program = f"const BINS = 20;\n{bin_of}\nconst scores = JSON.parse(require('fs').readFileSync(0));\n"
    program += "process.stdout.write(JSON.stringify(scores.map(binOf)));\n"
    done = subprocess.run(["node", "-e", program], input=json.dumps(scores), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_kept_bins_are_the_live_pages_bins_at_every_edge(db):
    scores = _edge_cases()
    with db.transaction():
        batch_id = db.execute(
            "INSERT INTO batches (public_id, chunk_size, status, total_count, processed_count, "
            "neutral_count, completed_at) VALUES (%s, 100, 'completed', %s, %s, %s, now()) RETURNING id",
            (new_public_id(), len(scores), len(scores), len(scores)),
        ).fetchone()[0]
        partitions.make(db, batch_id)
        with db.cursor().copy(
            "COPY batch_results (batch_id, row_number, compound, pos, neu, neg) FROM STDIN"
        ) as copy:
            for n, score in enumerate(scores, start=1):
                copy.write_row((batch_id, n, score, 0, 1, 0))
    expected = [0] * 20
    for score in scores:
        expected[_js_rule(score)] += 1
    assert summaries.keep(db, batch_id)
    assert (
        db.execute("SELECT histogram FROM batch_summaries WHERE batch_id = %s", (batch_id,)).fetchone()[0]
        == expected
    )
    if shutil.which("node"):
        real = [0] * 20
        for bin_ in _real_js_bins(scores):
            real[bin_] += 1
        assert real == expected
