"""Result pages in any order at any depth: one sentiment by page number, and
compound order (most negative or most positive first), with or without a sentiment, by cursor and
by page number; page P equals the P-th slice of the list walked by cursor, across checkpoints."""

from __future__ import annotations

import json

import pytest

from core.batches import ordering
from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import score_everything

ROWS = 3_500  # past many checkpoints (every 100 rows) of every list


@pytest.fixture
def scored(client, db, upload):  # type: ignore[no-untyped-def]
    batch_id = upload(make_csv(sample_texts(ROWS, seed=3)))["batch_id"]
    score_everything(db)
    return batch_id


def _oracle(db, batch_id: str, sentiment: str | None, order: str | None) -> list[int]:  # type: ignore[no-untyped-def]
    """The list's row numbers, ordered by plain SQL: compound then row (the claim is that
    (sentiment, compound, row) is the same order)."""
    by = {
        None: "r.row_number",
        "compound": "r.compound, r.row_number",
        "-compound": "r.compound DESC, r.row_number DESC",
    }
    where = {None: "true", "compound": "r.error IS NULL", "-compound": "r.error IS NULL"}[order]
    where = "vader_label(r.compound) = %(s)s" if sentiment else where
    rows = db.execute(
        f"SELECT r.row_number FROM batch_results r JOIN batches b ON b.id = r.batch_id"
        f" WHERE b.public_id = %(b)s AND {where} ORDER BY {by[order]}",
        {"b": batch_id, "s": sentiment},
    ).fetchall()
    return [r[0] for r in rows]


def _query(sentiment: str | None, order: str | None, **more: object) -> str:
    params = {k: v for k, v in {"sentiment": sentiment, "order": order, **more}.items() if v is not None}
    return "&".join(f"{k}={v}" for k, v in params.items())


def _walk(client, batch_id: str, sentiment, order, per_page: int) -> list[int]:  # type: ignore[no-untyped-def]
    rows, cursor = [], None
    while True:
        extra = f"&after={cursor}" if cursor else ""
        page = client.get(f"/batch/{batch_id}/results?{_query(sentiment, order, per_page=per_page)}{extra}")
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        rows += [r["row"] for r in body["results"]]
        cursor = body["next_cursor"]
        if not cursor:
            return rows


LISTS = [(s, o) for o in (None, "compound", "-compound") for s in (None, "positive", "negative", "neutral")]


@pytest.mark.parametrize("sentiment, order", LISTS)
def test_every_list_walked_by_cursor_and_by_page_number(client, db, scored, sentiment, order):
    expected = _oracle(db, scored, sentiment, order)
    assert len(expected) > 100
    assert _walk(client, scored, sentiment, order, per_page=250) == expected
    per_page = 7
    last_page = -(-len(expected) // per_page)
    # Pages on each side of every checkpoint, the first, the last, and one past the end.
    pages = {1, 2, last_page, last_page + 1}
    for checkpoint in range(ordering.CHECKPOINT_EVERY, len(expected), ordering.CHECKPOINT_EVERY):
        pages |= {checkpoint // per_page, checkpoint // per_page + 1, checkpoint // per_page + 2}
    for number in sorted(pages):
        answer = client.get(
            f"/batch/{scored}/results?{_query(sentiment, order, page=number, per_page=per_page)}"
        )
        assert answer.status_code == 200, answer.get_json()
        got = [r["row"] for r in answer.get_json()["results"]]
        assert got == expected[(number - 1) * per_page : number * per_page], number
        if got and number < last_page:
            assert f"page={number + 1}" in answer.headers["Link"]
            # The page's cursor goes on where page P + 1 starts.
            cursor = answer.get_json()["next_cursor"]
            more = client.get(
                f"/batch/{scored}/results?{_query(sentiment, order, per_page=per_page)}&after={cursor}"
            )
            assert [r["row"] for r in more.get_json()["results"]] == expected[
                number * per_page : (number + 1) * per_page
            ]


def test_compound_order_puts_the_most_negative_first_and_the_most_positive_first(client, scored):
    worst = client.get(f"/batch/{scored}/results?order=compound&per_page=20").get_json()["results"]
    best = client.get(f"/batch/{scored}/results?order=-compound&per_page=20").get_json()["results"]
    assert [r["compound"] for r in worst] == sorted(r["compound"] for r in worst)
    assert [r["compound"] for r in best] == sorted((r["compound"] for r in best), reverse=True)
    assert worst[0]["compound"] < 0 < best[0]["compound"]
    assert worst[0]["sentiment"] == "negative" and best[0]["sentiment"] == "positive"


def test_checkpoints_are_written_once_per_list(client, db, scored):
    for _ in range(2):
        assert client.get(f"/batch/{scored}/results?order=compound&page=300&per_page=10").status_code == 200
    listings = db.execute("SELECT listing, count(*) FROM result_checkpoints GROUP BY listing").fetchall()
    # The sort keys once (their mark), and one list's checkpoints.
    assert sorted(listings) == [
        ("compound", 1 + ROWS_WITH_COMPOUND(db) // ordering.CHECKPOINT_EVERY),
        ("keys", 1),
    ]
    assert db.execute("SELECT count(*) FROM batch_result_keys").fetchone()[0] == ROWS_WITH_COMPOUND(db)


def ROWS_WITH_COMPOUND(db) -> int:  # type: ignore[no-untyped-def]
    return db.execute("SELECT count(*) FROM batch_results WHERE error IS NULL").fetchone()[0]


def test_cursors_of_one_list_do_not_work_in_another(client, scored):
    cursor = client.get(f"/batch/{scored}/results?order=compound&per_page=5").get_json()["next_cursor"]
    assert client.get(f"/batch/{scored}/results?order=-compound&after={cursor}").status_code == 400
    assert client.get(f"/batch/{scored}/results?after={cursor}").status_code == 400
    assert (
        client.get(f"/batch/{scored}/results?order=compound&sentiment=positive&after={cursor}").status_code
        == 400
    )
    assert client.get(f"/batch/{scored}/results?order=score").status_code == 400
    assert client.get(f"/batch/{scored}/results?order=compound&before={cursor}").status_code == 400


def test_the_ordered_page_reads_one_index_range(client, db, scored):
    assert client.get(f"/batch/{scored}/results?order=-compound").status_code == 200  # keys written
    db.execute("ANALYZE batch_result_keys")
    db.execute("SET enable_seqscan = off")  # tiny test tables: judge the plan's shape
    batch = db.execute("SELECT id FROM batches WHERE public_id = %s", (scored,)).fetchone()[0]
    order = ordering.ORDERS["-compound"]
    statement = ordering._statement(order, None, ["positive", 0.5, 10], "batch_results_ordered")
    plan = db.execute(sql_explain(statement), {"batch_id": batch, "limit": 50}).fetchone()[0]
    text = json.dumps(plan)
    # One range of the keys' compound index in one partition, then the rows it names by key: the
    # outer ORDER BY is over those 50 rows only.
    assert "batch_result_keys_compound_idx" in text
    relations = {n["Relation Name"] for n in _nodes(plan[0]["Plan"]) if "Relation Name" in n}
    # Besides the partitions, the batch's own row (its kept columns' names), by its primary key.
    assert "batches" in relations
    relations.discard("batches")
    assert len({name.rsplit("_p", 1)[1] for name in relations}) == 1, relations  # one partition range
    assert not any(n["Node Type"] == "Seq Scan" for n in _nodes(plan[0]["Plan"]))
    limit = next(n for n in _nodes(plan[0]["Plan"]) if n["Node Type"] == "Limit")
    assert not any(n["Node Type"] == "Sort" for n in _nodes(limit)), plan  # the range is read in order


def _nodes(node):  # type: ignore[no-untyped-def]
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def sql_explain(statement):  # type: ignore[no-untyped-def]
    from psycopg import sql

    return sql.SQL("EXPLAIN (FORMAT JSON) ") + statement


def test_a_page_deeper_than_one_requests_reading_is_built_over_several(client, db, scored, monkeypatch):
    monkeypatch.setattr(ordering, "SCAN_ROWS", 1_200)  # each request reads at most this many keys
    expected = _oracle(db, scored, None, "-compound")
    number, per_page = len(expected) // 10 - 1, 10
    answers = []
    for _ in range(10):
        answer = client.get(f"/batch/{scored}/results?order=-compound&page={number}&per_page={per_page}")
        answers.append(answer.status_code)
        if answer.status_code == 200:
            break
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.get_json()["type"].endswith("page-not-ready")
    assert answers[0] == 503 and answers[-1] == 200 and len(answers) == 3  # 1,200 keys a request
    got = [r["row"] for r in answer.get_json()["results"]]
    assert got == expected[(number - 1) * per_page : number * per_page]


def test_pages_read_forwards_only_offer_no_previous_link(client, scored):
    page = client.get(
        f"/batch/{scored}/results?order=compound&page=3&per_page=5", headers={"Accept": "text/html"}
    )
    assert page.status_code == 200
    assert "before=" not in page.get_data(as_text=True)
