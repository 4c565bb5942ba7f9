"""Failover to a streaming standby, with real processes: DATABASE_URL lists a primary and its
standby (``target_session_attrs=read-write``); gunicorn and two runners work on a big batch while
a client uploads and pages; the primary is stopped with ``pg_ctl stop -m immediate`` and the
standby promoted with ``pg_ctl promote``.

Whatever the standby had received, the service carries on there: every batch the new primary
knows completes with exactly one result per row, an upload answered 202 is there whole or a
clean 404 (and its Idempotency-Key, sent again, makes it anew), and the runners reconnect in
place. The time from the promotion to the first commit is printed (docs/design.md, "Failover").
Clusters, proxy, gunicorn and runners are all stopped, and the directories removed, failed or not.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import requests
from flask import Flask

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import RunnerProcesses, WebServer
from tests.integration.failover_support import (
    DB,
    Client,
    Pair,
    Upload,
    assert_every_batch_whole,
    assert_reconnected_in_place,
    first_commit_after,
    primary_and_standby,
    reconnect_lines,
)
from tests.integration.helpers import assert_problem
from webapp import create_app

#: The big batch: 200,000 rows take about a minute for 2 runners on 2 shared cores.
BIG_ROWS = 200_000
#: Seconds between the primary's end and the promotion in the main test, as a failover manager
#: (Patroni, pg_auto_failover, an operator) takes to decide; the runners' pauses between attempts
#: reach their longest (5 s) and the web's theirs (2 s) meanwhile.
DETECTION = 10.0


@contextlib.contextmanager
def service(pair: Pair, logdir: Path, **runner_env: str) -> Iterator[tuple[WebServer, RunnerProcesses]]:
    """gunicorn and two runners on the pair's multi-host URL, stopped after."""
    runners = RunnerProcesses(pair.url, logdir)
    web = None
    try:
        web = WebServer(pair.url, logdir, DB_POOL_TIMEOUT="2")
        runners.start(**runner_env)
        runners.start(**runner_env)
        yield web, runners
    finally:
        runners.stop_all()
        if web is not None:
            web.stop()


def upload_big(web: WebServer, rows: int) -> str:
    body = make_csv(sample_texts(rows, seed=41))
    answer = requests.post(
        f"{web.base}/batch/upload", data=body, headers={"Content-Type": "text/csv"}, timeout=120
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["batch_id"]


def processed(conn: psycopg.Connection, public_id: str) -> int:
    query = "SELECT processed_count FROM batches WHERE public_id = %s"
    row = conn.execute(query, (public_id,)).fetchone()
    return row[0] if row else -1


def fail_over(pair: Pair, detection: float = 0.0) -> tuple[float, float, float]:
    """Stop the primary at once, promote the standby ``detection`` seconds later (what a failover
    manager takes to decide): the seconds the promotion took, when it ended (time.monotonic()), and
    the seconds from then to the first runner commit there."""
    pair.primary.stop("immediate")
    time.sleep(detection)  # the service meanwhile: 503s, runners retrying
    started = time.monotonic()
    pair.standby.promote()
    promoted = time.monotonic()
    return promoted - started, promoted, first_commit_after(pair)


def retry_lost(web: WebServer, uploads: list[Upload], present: dict[str, bool]) -> None:
    """What a client does after a failover: an upload it is unsure of (a 503, or a 202 whose batch
    is now a 404) is sent again with its Idempotency-Key; one that survived is replayed, never
    made twice, and a lost one is made anew."""
    for upload in uploads:
        headers = {"Content-Type": "text/csv", "Idempotency-Key": upload.key}
        answer = requests.post(f"{web.base}/batch/upload", data=upload.body, headers=headers, timeout=60)
        assert answer.status_code == 202, answer.text
        if upload.status == 202 and present[upload.batch_id]:
            assert answer.json()["batch_id"] == upload.batch_id
            assert answer.headers.get("Idempotent-Replayed") == "true"
        elif upload.status == 202:
            assert answer.json()["batch_id"] != upload.batch_id


def check_accepted(web: WebServer, uploads: list[Upload]) -> dict[str, bool]:
    """Each 202 before the failover: its batch whole (status, total as answered) or a clean 404."""
    present = {}
    for upload in uploads:
        answer = requests.get(f"{web.base}/batch/{upload.batch_id}", timeout=30)
        assert answer.status_code in (200, 404), answer.text
        present[upload.batch_id] = answer.status_code == 200
        if answer.status_code == 200:
            assert answer.json()["total_count"] == upload.total_count
        else:
            assert answer.headers["Content-Type"].startswith("application/problem+json")
    return present


def finish_and_check(pair: Pair, web: WebServer, runners: RunnerProcesses, client: Client) -> dict[str, bool]:
    """After the failover: the client stopped, the lost uploads sent again, everything complete."""
    client.stopping.set()
    if client.ident is not None:  # started
        client.join(timeout=90)
    assert not client.unexpected, client.unexpected
    present = check_accepted(web, client.accepted())
    retry_lost(
        web, [u for u in client.uploads if u.status == 503 or not present.get(u.batch_id, True)], present
    )
    with pair.connect(pair.standby) as conn:
        wait_for(
            lambda: (
                conn.execute("SELECT count(*) FROM batches WHERE status = 'processing'").fetchone()[0] == 0
            ),
            timeout=150,
            interval=0.5,
        )
        assert assert_every_batch_whole(conn) >= 1
        pids = {proc.pid for proc in runners.procs}
        heartbeats = "SELECT pid FROM runners"
        wait_for(lambda: {pid for (pid,) in conn.execute(heartbeats)} == pids, timeout=30)
    assert all(proc.poll() is None for proc in runners.procs)
    assert_reconnected_in_place(runners.each_log())
    return present


def test_failover_mid_batch_with_the_standby_streaming(tmp_path: Path) -> None:
    with primary_and_standby() as pair, service(pair, tmp_path) as (web, runners):
        big = upload_big(web, BIG_ROWS)
        with pair.connect(pair.primary) as conn:
            wait_for(lambda: processed(conn, big) >= BIG_ROWS // 5, timeout=120, interval=0.2)
        client = Client(web.base, big)
        client.start()
        try:
            wait_for(lambda: len(client.accepted()) >= 3 and client.pages >= 3, timeout=60)
            promoted, at, first_commit = fail_over(pair, detection=DETECTION)
            # The web serves again on the new primary: uploads are accepted there.
            wait_for(lambda: len(client.accepted(at)) >= 2, timeout=60)
            web_back = min(u.answered_at for u in client.accepted(at)) - at
        finally:
            client.stopping.set()
        present = finish_and_check(pair, web, runners, client)
        print(
            f"\nfailover, standby streaming, promoted {DETECTION:.0f}s after the primary stopped: "
            f"promote took {promoted:.2f}s; first runner commit "
            f"{first_commit:.2f}s after it; first 202 within {web_back:.2f}s of it; "
            f"{sum(present.values())} of {len(present)} accepted uploads present, the rest 404"
        )


def test_failover_to_a_standby_that_is_behind(tmp_path: Path) -> None:
    """The standby's WAL stops (the proxy is cut) before the failover: the new primary lacks
    commits the old one acknowledged, and those are cleanly absent."""
    # Scoring slowed to 0.1 s a chunk, so the batch outlasts the cut and 2,000 rows more.
    slow = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.1"}
    with primary_and_standby() as pair, service(pair, tmp_path, **slow) as (web, runners):
        big = upload_big(web, BIG_ROWS // 4)
        with pair.connect(pair.primary) as conn:
            wait_for(lambda: processed(conn, big) >= BIG_ROWS // 40, timeout=120, interval=0.2)
        client = Client(web.base, big)
        client.start()
        try:
            wait_for(lambda: len(client.accepted()) >= 2, timeout=60)
            wait_for(pair.caught_up, timeout=60)
            pair.proxy.cut()
            wait_for(lambda: not pair.streaming(), timeout=30, interval=0.1)
            cut = time.monotonic()
            with pair.connect(pair.primary) as conn:
                at_cut = processed(conn, big)
                # The old primary goes on acknowledging uploads and commits the standby never gets.
                wait_for(lambda: len(client.accepted(cut)) >= 3, timeout=60)
                wait_for(lambda: processed(conn, big) >= at_cut + 2_000, timeout=60, interval=0.1)
                acknowledged = processed(conn, big)
            lost = client.accepted(cut)
            promoted, _, first_commit = fail_over(pair)
        finally:
            client.stopping.set()
        with pair.connect(pair.standby) as conn:
            assert processed(conn, big) < acknowledged
        present = finish_and_check(pair, web, runners, client)
        assert not any(present[u.batch_id] for u in lost), "an upload the standby never received is there"
        print(
            f"\nfailover, standby behind: promote took {promoted:.2f}s; first runner commit "
            f"{first_commit:.2f}s after it; {len(lost)} uploads answered 202 after the cut: all 404, "
            f"made anew by their Idempotency-Key"
        )


def test_failover_with_synchronous_replication(tmp_path: Path) -> None:
    """The same cut with the standby synchronous (synchronous_standby_names): commits after it wait
    for the standby, so none is acknowledged, and every upload answered 202 is on the new primary."""
    slow = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.2"}
    with primary_and_standby(synchronous=True) as pair, service(pair, tmp_path, **slow) as (web, runners):
        big = upload_big(web, 20_000)
        with pair.connect(pair.primary) as conn:
            wait_for(lambda: processed(conn, big) >= 2_000, timeout=120, interval=0.1)
        client = Client(web.base, big)
        client.start()
        try:
            wait_for(lambda: len(client.accepted()) >= 3, timeout=60)
            pair.proxy.cut()
            wait_for(lambda: not pair.streaming(), timeout=30, interval=0.1)
            # Commits wait for the standby (the client's next upload, and the runners' while the batch
            # lasts): committed on the primary, where other sessions already see them, not acknowledged.
            wait_for(lambda: pair.waiting_for_standby() >= 1, timeout=60, interval=0.1)
            promoted, _, first_commit = fail_over(pair)
        finally:
            client.stopping.set()
        present = finish_and_check(pair, web, runners, client)
        assert all(present.values()), present
        print(
            f"\nfailover, synchronous standby: promote took {promoted:.2f}s; first runner commit "
            f"{first_commit:.2f}s after it; all {len(present)} uploads answered 202 present"
        )


@contextlib.contextmanager
def app_on(url: str) -> Iterator[Flask]:
    """The web app in this process on ``url``, its pool's first session open; closed after."""
    app = create_app({"database_url": url, "migrate_on_start": False, "db_pool_timeout": 10})
    try:
        app.extensions["db_pool"].wait(timeout=60)
        yield app
    finally:
        app.extensions["db_pool"].close()


def test_a_read_only_old_primary_is_left_for_the_new_one(tmp_path: Path) -> None:
    """A failover that fences the old primary (read-only, still up) rather than stopping it: the
    sessions already there meet SQLSTATE 25006 (read_only_sql_transaction) and are replaced, not
    used again; libpq then skips the read-only host for the promoted standby."""
    slow = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.1"}
    with (
        primary_and_standby() as pair,
        service(pair, tmp_path, **slow) as (web, runners),
        app_on(pair.url) as pooled,
    ):
        big = upload_big(web, 20_000)
        with pair.connect(pair.primary) as conn:
            wait_for(lambda: processed(conn, big) >= 2_000, timeout=120, interval=0.1)
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
        wait_for(pair.caught_up, timeout=60)
        pair.standby.promote()
        # A pooled session on the old primary fails the pool's check as it is handed out (its server
        # reported default_transaction_read_only=on), so even the first request is served, from the
        # new primary; without the check it would meet 25006 and be a 503.
        assert pooled.test_client().get(f"/batch/{big}").status_code == 200
        # gunicorn's pool does the same; its uploads land on the new primary.
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "after-the-fence"}
        post = functools.partial(
            requests.post, f"{web.base}/batch/upload", data=make_csv(["fine"]), headers=headers
        )
        answer = wait_for(lambda: (a := post(timeout=60)).status_code == 202 and a, timeout=60, interval=0.2)
        client = Client(web.base, big)  # not started: nothing to report but the runners'
        finish_and_check(pair, web, runners, client)
        with pair.connect(pair.primary) as old:
            query = "SELECT count(*) FROM batches WHERE public_id = %s"
            assert old.execute(query, (answer.json()["batch_id"],)).fetchone()[0] == 0
        reasons = [reason for log in runners.each_log() for _, reason, _ in reconnect_lines(log)]
        assert any("read-only transaction" in reason for reason in reasons), reasons


def test_a_session_that_meets_a_read_only_server_is_not_pooled_again() -> None:
    """A URL naming a read-only server alone (no target_session_attrs, so no check as sessions are
    handed out): the session that meets SQLSTATE 25006 is a 503 and is closed on its way back to
    the pool, each time, rather than kept for the next request."""
    with primary_and_standby() as pair:
        with pair.connect(pair.primary) as conn:
            conn.execute(f"ALTER DATABASE {DB} SET default_transaction_read_only = on")
        with app_on(pair.primary.url(DB)) as app:
            client = app.test_client()
            for attempt in (1, 2):
                refused = client.post("/batch/upload", data=make_csv(["fine"]), content_type="text/csv")
                assert_problem(refused, 503, "database-unavailable")
                assert app.extensions["db_pool"].get_stats().get("returns_bad") == attempt
