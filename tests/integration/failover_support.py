"""What the failover tests (test_failover.py) build on: a primary and a streaming standby of its
own, both on TCP, the standby fed through a :class:`~tests.cut_proxy.CutProxy`; a client that
uploads and pages through gunicorn all along; and the checks made once the standby took over.

The pair is the test's, not the session's cluster: the test stops its primary for good. Both
clusters are stopped and their directories removed when the test ends, failed or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import requests

from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate
from tests.cut_proxy import CutProxy
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import free_port

DB = "sentiment"


@dataclasses.dataclass
class Pair:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres
    proxy: CutProxy  # between the standby's primary_conninfo and the primary

    @property
    def url(self) -> str:
        """DATABASE_URL as an operator writes it: both hosts, the writable one wanted."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{DB}?target_session_attrs=read-write"

    def connect(self, cluster: EmbeddedPostgres) -> psycopg.Connection:
        return psycopg.connect(cluster.url(DB), autocommit=True)

    def streaming(self) -> bool:
        with self.connect(self.primary) as conn:
            query = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            return conn.execute(query).fetchone()[0] == 1

    def waiting_for_standby(self) -> int:
        """Sessions of the primary whose commit waits for the synchronous standby."""
        with self.connect(self.primary) as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            return conn.execute(query).fetchone()[0]

    def caught_up(self) -> bool:
        """The standby has replayed everything the primary has written so far."""
        with self.connect(self.primary) as primary, self.connect(self.standby) as standby:
            lsn = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            query = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
            return standby.execute(query, (lsn,)).fetchone()[0]


@contextlib.contextmanager
def primary_and_standby(synchronous: bool = False) -> Iterator[Pair]:
    """A migrated primary (synchronous_commit on, as a production server runs; fsync off, since
    only the server processes die here, never the machine) and a hot standby made with
    ``pg_basebackup --write-recovery-conf``, streaming through a cuttable proxy; ``synchronous``:
    the primary's ``synchronous_standby_names`` names it, so a commit waits for it."""
    base = Path(tempfile.mkdtemp(prefix="sentiment-fo-"))  # short: socket paths fit in 107 bytes
    primary = EmbeddedPostgres(base / "primary", port=free_port(), listen_tcp=True)
    clusters, proxy = [primary], None
    try:
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"CREATE DATABASE {DB}")
        migrate(primary.url(DB))
        proxy = CutProxy(("127.0.0.1", primary.port))
        standby = primary.standby(base / "standby", free_port())
        clusters.append(standby)
        # After pg_basebackup's own line, so it wins: stream through the proxy.
        with (standby.datadir / "pgdata" / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = 'host=127.0.0.1 port={proxy.port} user=postgres'\n")
        standby.start()
        pair = Pair(primary, standby, proxy)
        wait_for(pair.streaming, timeout=60, interval=0.2)
        if synchronous:
            with pair.connect(primary) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("SELECT pg_reload_conf()")
                query = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                wait_for(lambda: conn.execute(query).fetchone()[0] == 1, timeout=30, interval=0.1)
        yield pair
    finally:
        if proxy is not None:
            proxy.close()
        for cluster in reversed(clusters):
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@dataclasses.dataclass
class Upload:
    key: str  # its Idempotency-Key
    body: bytes
    answered_at: float  # time.monotonic() of the answer
    status: int  # 202, or 503 when the database was unreachable
    batch_id: str | None = None
    total_count: int | None = None


class Client(threading.Thread):
    """Uploads 200-row files (each with an Idempotency-Key) and pages through ``paged`` until
    stopped; keeps every upload's answer, and anything that is neither a success nor a 503."""

    def __init__(self, base: str, paged: str) -> None:
        super().__init__(name="failover-client", daemon=True)
        self.base, self.paged = base, paged
        self.uploads: list[Upload] = []
        self.pages = 0
        self.unexpected: list[str] = []
        self.stopping = threading.Event()

    def accepted(self, after: float = 0.0) -> list[Upload]:
        return [u for u in self.uploads if u.status == 202 and u.answered_at > after]

    def run(self) -> None:
        cursor, n = None, 0
        with requests.Session() as http:
            while not self.stopping.is_set():
                n += 1
                self._upload(http, make_csv(sample_texts(200, seed=5000 + n)))
                cursor = self._page(http, cursor)
                self.stopping.wait(0.1)

    def _upload(self, http: requests.Session, body: bytes) -> None:
        key = f"failover-{uuid.uuid4().hex}"
        headers = {"Content-Type": "text/csv", "Idempotency-Key": key}
        try:
            answer = http.post(f"{self.base}/batch/upload", data=body, headers=headers, timeout=60)
        except requests.RequestException as exc:
            self.unexpected.append(f"upload: {exc!r}")
            return
        upload = Upload(key, body, time.monotonic(), answer.status_code)
        if answer.status_code == 202:
            upload.batch_id, upload.total_count = answer.json()["batch_id"], answer.json()["total_count"]
        elif answer.status_code != 503:
            self.unexpected.append(f"upload: {answer.status_code} {answer.text[:300]}")
        self.uploads.append(upload)

    def _page(self, http: requests.Session, cursor: str | None) -> str | None:
        params = {"per_page": "200", **({"after": cursor} if cursor else {})}
        try:
            answer = http.get(f"{self.base}/batch/{self.paged}/results", params=params, timeout=60)
        except requests.RequestException as exc:
            self.unexpected.append(f"page: {exc!r}")
            return None
        if answer.status_code == 200:
            self.pages += 1
            return answer.json().get("next_cursor")
        if answer.status_code != 503:
            self.unexpected.append(f"page: {answer.status_code} {answer.text[:300]}")
        return cursor


def commits(conn: psycopg.Connection) -> int:
    """Rows the runners have committed, over every batch."""
    return conn.execute("SELECT coalesce(sum(processed_count + failed_count), 0) FROM batches").fetchone()[0]


def first_commit_after(pair: Pair, timeout: float = 120) -> float:
    """Seconds until the promoted standby shows a runner's commit, from now (just promoted)."""
    started = time.monotonic()
    with pair.connect(pair.standby) as conn:
        before = commits(conn)
        wait_for(lambda: commits(conn) > before, timeout=timeout, interval=0.02)
    return time.monotonic() - started


def assert_every_batch_whole(conn: psycopg.Connection) -> int:
    """Every batch the server knows is completed, its rows each with exactly one result, its
    counters a recount and its queue empty; how many batches."""
    query = """
        SELECT b.public_id, b.status, b.total_count, b.processed_count + b.failed_count + b.invalid_count,
               (SELECT count(*) FROM batch_inputs i WHERE i.batch_id = b.id),
               (SELECT count(*) FROM batch_results r WHERE r.batch_id = b.id),
               (SELECT count(DISTINCT row_number) FROM batch_results r WHERE r.batch_id = b.id),
               (SELECT count(*) FROM batch_row_errors e WHERE e.batch_id = b.id),
               (SELECT count(*) FROM chunks c WHERE c.batch_id = b.id)
        FROM batches AS b WHERE b.deleted_at IS NULL
    """
    rows = conn.execute(query).fetchall()
    for public_id, status, total, counted, inputs, results, distinct, set_aside, queued in rows:
        assert status == "completed", (public_id, status)
        assert results == distinct == inputs, (public_id, inputs, results, distinct)
        assert counted == total == inputs + set_aside, (public_id, total, counted, inputs, set_aside)
        assert queued == 0, (public_id, queued)
    return len(rows)


RETRY_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING \d+ jobrunner\.runner: "
    r"database unavailable \((.*)\); retrying in ([\d.]+)s$",
    re.MULTILINE,
)


def reconnect_lines(log: str) -> list[tuple[float, str, float]]:
    """The scoring loop's "database unavailable" lines: (time, reason, announced pause)."""
    found = []
    for stamp, reason, pause in RETRY_LINE.findall(log):
        when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        found.append((when, reason, float(pause)))
    return found


def assert_reconnected_in_place(logs: list[str]) -> None:
    """Each runner met the failover and retried on its own, one line per pause, each attempt after
    the pause it announced (the loop's retries follow one another: no storm of reconnects), and
    never restarted its loop or crashed."""
    for log in logs:
        lines = reconnect_lines(log)
        assert lines, log[-3000:]
        assert "the loop failed" not in log and "Traceback" not in log, log[-3000:]
        for (when, _, pause), (later, _, _) in itertools.pairwise(lines):
            assert later - when >= pause - 0.01, (when, pause, later)
