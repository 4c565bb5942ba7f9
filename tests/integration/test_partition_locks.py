"""Partition upkeep and the locks it takes: an upload makes its range's partitions in a short
transaction of its own, so one upload stalled in its COPY holds up nobody's partitions; a reaper
turn waits for locks at most what is left of its budget, and ends quietly when that is spent.

Nothing here measures time: the tests hold real locks and sockets open and check what was
answered, what was logged and what was stored while they are held."""

from __future__ import annotations

import logging
import re
import threading

import psycopg
import requests

from core import batches
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.helpers import score_everything, upload_file, uploads_copying
from tests.rawhttp import connect, head, read_answer, still_open


def _partitions(db) -> set[str]:  # type: ignore[no-untyped-def]
    return {row[0] for row in db.execute("SELECT partition FROM batch_partitions")}


def test_an_upload_stalled_in_its_copy_holds_up_no_other_uploads_partitions(serve, db):
    # Every upload lands in a range of ids no partition holds yet (no runner makes them ahead here).
    db.execute("ALTER SEQUENCE batches_id_seq RESTART WITH 1001 INCREMENT BY 10")
    web = serve(CLIENT_TIMEOUT="300", MAX_UPLOADS="4")
    body = make_csv(sample_texts(2_000))
    cut = 80_000  # past the 64 KiB the server waits for before a thread takes the upload
    head_ = head("POST", "/batch/upload", Content_Type="text/csv", Content_Length=str(len(body)))
    with connect(web.port, timeout=120) as stalled:
        stalled.sendall(head_ + body[:cut])
        wait_for(lambda: uploads_copying(db) == 1, timeout=60)  # its partitions made, its COPY waiting
        second = requests.post(
            f"{web.base}/batch/upload",
            data=make_csv(["nice", "awful"]),
            headers={"Content-Type": "text/csv"},
            timeout=120,
        )
        assert second.status_code == 202, second.text
        assert still_open(stalled)  # answered while the first upload was still in its COPY
        stalled.setblocking(True)
        stalled.sendall(body[cut:])
        first = read_answer(stalled)
    assert first is not None and first.status == 202, first
    placed = db.execute(
        "SELECT batch_id, tableoid::regclass::text, count(*) FROM batch_inputs GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    assert placed == [(1001, "batch_inputs_p1000", 2_000), (1011, "batch_inputs_p1010", 2)]
