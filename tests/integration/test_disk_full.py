"""A full disk under the database, and under the web worker's spool, with real processes.

The database test starts a PostgreSQL of its own whose test database (its tablespace: tables,
indexes, temporary files) and WAL (``pg_wal``) live on a small tmpfs the test mounts, serves it
with a real gunicorn and two real runners, and fills the filesystem with uploads while the runners
score, then tops it off with a file until not a byte is left. While it is full: uploads are a 507
``storage-full`` problem with ``Retry-After`` and leave nothing behind, reads still answer,
``/readyz`` is a 503 saying why, and the runners stay alive and wait with a bounded number of
tries, logging it once per period. Then the test deletes the filler file it put there first, and
every batch accepted before completes, one result per row, with no process restarted. It prints
the time from freeing the space to the first committed round.

The spool test gives gunicorn a 64 kB ``TMPDIR``: an ``.xlsx`` upload larger than that is a 507,
nothing is stored and the spool leaves no byte behind.

Mounting needs root (as in CI); without it both tests are skipped with the reason. Whatever
happens, every process is stopped, and every mount unmounted and removed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import psycopg
import pytest
import requests

from core.disk_full import LOG_PERIOD_SECONDS, RETRY_AFTER_SECONDS
from core.embedded_postgres import EmbeddedPostgres
from core.migrations import migrate
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import RunnerProcesses, WebServer, free_port
from tests.integration.helpers import assert_nothing_written
from webapp.upload.file_rows import XLSX_MEDIA_TYPE

PROBLEM = "application/problem+json"
#: The small filesystem: WAL, the test database, and the filler files.
DISK_SIZE = "300M"
#: Room left for the uploads once the first filler file is in place.
ROOM_FOR_UPLOADS = 16 * 1024**2
ROWS_PER_UPLOAD = 10_000
#: The runners' pace: 1,000-row chunks, half a second each, so work is left when the disk fills.
RUNNER_ENV = {"SCORER": "tests.scorers:slow", "TEST_SCORE_DELAY_SECONDS": "0.5"}
WEB_ENV = {"CHUNK_SIZE": "1000", "WEB_CONCURRENCY": "1"}
#: How long the disk stays full once every runner has met it: long enough for their tries to back
#: off to their longest wait (0.5 + 1 + 2 + 4 s, then 5 s apart) and for their leases to expire.
HOLD_FULL_SECONDS = 15


def _not_root() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount and umount are not installed"
    return None


pytestmark = pytest.mark.skipif(_not_root() is not None, reason=str(_not_root()))


@contextlib.contextmanager
def small_filesystem(size: str, owner: tuple[int, int] | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh directory (owned by ``owner``), unmounted and removed
    after, however the block ends."""
    mountpoint = Path(tempfile.mkdtemp(prefix="sentiment-disk-"))
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "sentiment-disk", str(mountpoint)],
            check=True,
            capture_output=True,
        )
        try:
            if owner is not None:
                os.chown(mountpoint, *owner)
            yield mountpoint
        finally:
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)
    finally:
        mountpoint.rmdir()


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, size: int | None = None) -> int:
    """Write a file of ``size`` bytes, or (None) of every byte left; the bytes written."""
    piece = b"\xa5" * 65536
    written = 0
    with path.open("wb", buffering=0) as out:
        while size is None or written < size:
            try:
                written += out.write(piece if size is None else piece[: size - written])
            except OSError as exc:
                if exc.errno != errno.ENOSPC or size is not None:
                    raise
                break
    return written


@dataclass
class SmallDisk:
    mountpoint: Path
    cluster: EmbeddedPostgres
    url: str


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A PostgreSQL whose WAL and test database are on a DISK_SIZE tmpfs; all gone after."""
    with contextlib.ExitStack() as stack:
        datadir = Path(tempfile.mkdtemp(prefix="sentiment-diskpg-"))
        stack.callback(shutil.rmtree, datadir, ignore_errors=True)
        cluster = EmbeddedPostgres(datadir, port=free_port(), fast_unsafe=True)
        owner = (cluster.user.pw_uid, cluster.user.pw_gid) if cluster.user else None
        mountpoint = stack.enter_context(small_filesystem(DISK_SIZE, owner))
        cluster.init()
        pgdata = cluster.datadir / "pgdata"
        shutil.move(pgdata / "pg_wal", mountpoint / "pg_wal")
        (pgdata / "pg_wal").symlink_to(mountpoint / "pg_wal")
        (mountpoint / "tablespace").mkdir()
        if owner is not None:  # a move across filesystems copies, as root
            wal = mountpoint / "pg_wal"
            for path in [mountpoint / "tablespace", wal, *wal.rglob("*")]:
                os.chown(path, *owner)
        with (pgdata / "postgresql.auto.conf").open("a") as conf:
            # WAL files are recycled at each checkpoint, so the WAL needs no new file however full
            # the disk is (a WAL file PostgreSQL cannot create stops it: docs/operations.md).
            conf.write("min_wal_size = '96MB'\nmax_wal_size = '96MB'\n")
        stack.callback(cluster.stop, "immediate")
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            # Six WAL files written and recycled before anything fills the disk.
            conn.execute("CREATE TABLE warm AS SELECT repeat('w', 900) AS w FROM generate_series(1, 100000)")
            conn.execute("DROP TABLE warm")
            conn.execute("CHECKPOINT")
            conn.execute(f"CREATE TABLESPACE small LOCATION '{mountpoint / 'tablespace'}'")
            conn.execute("CREATE DATABASE disk_full TABLESPACE small")
        url = cluster.url("disk_full")
        migrate(url)
        yield SmallDisk(mountpoint, cluster, url)


def post_csv(base: str, rows: int, seed: int) -> requests.Response:
    body = make_csv(sample_texts(rows, seed=seed))
    return requests.post(f"{base}/batch/upload", data=body, headers={"Content-Type": "text/csv"}, timeout=60)


def assert_storage_full(answer: requests.Response, status: int = 507) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == PROBLEM
    assert answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    body = answer.json()
    assert body["type"] == "/problems/storage-full" and body["status"] == status
    return body


def one(conn: psycopg.Connection, sql: str, *params: object) -> object:
    return conn.execute(sql, params).fetchone()[0]


def assert_whole(conn: psycopg.Connection) -> None:
    """Every batch has all its input rows and its queue; no row belongs to no batch."""
    torn = conn.execute(
        "SELECT b.public_id, b.total_count, count(i.row_number) FROM batches AS b"
        " LEFT JOIN batch_inputs AS i ON i.batch_id = b.id GROUP BY b.id"
        " HAVING count(i.row_number) <> b.total_count"
    ).fetchall()
    assert not torn, f"batches without all their input rows: {torn}"
    for table in ("batch_inputs", "batch_results", "chunks"):
        orphans = one(conn, f"SELECT count(*) FROM {table} WHERE batch_id NOT IN (SELECT id FROM batches)")
        assert orphans == 0, f"{orphans} row(s) of {table} belong to no batch"
    unqueued = one(
        conn,
        "SELECT count(*) FROM batches AS b WHERE status = 'processing'"
        " AND NOT EXISTS (SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id)",
    )
    assert unqueued == 0, "a processing batch has no chunks"


def assert_exactly_once(conn: psycopg.Connection, public_id: str, rows: int) -> None:
    internal, status, processed = conn.execute(
        "SELECT id, status, processed_count FROM batches WHERE public_id = %s", (public_id,)
    ).fetchone()
    count, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT row_number) FROM batch_results WHERE batch_id = %s", (internal,)
    ).fetchone()
    assert (status, processed, count, distinct) == ("completed", rows, rows, rows)


def scored(conn: psycopg.Connection) -> int:
    return one(conn, "SELECT coalesce(sum(processed_count), 0)::bigint FROM batches")


RUNNER_REFUSED = "the runner's writes refused"
DISK_LINES = re.compile(r"the database's disk is (still )?full")
ROOM_AGAIN = re.compile(r"(the runner's writes) went through after (\d+) refusal\(s\) over ([\d.]+) s")


def test_a_full_disk_refuses_uploads_holds_runners_and_everything_completes_once_freed(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    disk = small_disk.mountpoint
    web = WebServer(small_disk.url, tmp_path, **WEB_ENV)
    runners = RunnerProcesses(small_disk.url, tmp_path)
    # The observer's session is opened now: a new session may need to write, which a full disk refuses.
    observer = psycopg.connect(small_disk.url, autocommit=True)
    try:
        for _ in range(2):
            runners.start(**RUNNER_ENV)
        assert requests.get(f"{web.base}/readyz", timeout=30).status_code == 200
        filler = disk / "filler"
        fill(filler, free_bytes(disk) - ROOM_FOR_UPLOADS)

        # Uploads until one is refused, while the runners score.
        accepted: list[str] = []
        for seed in range(100):
            answer = post_csv(web.base, ROWS_PER_UPLOAD, seed)
            if answer.status_code != 202:
                assert_storage_full(answer)
                break
            accepted.append(answer.json()["batch_id"])
        else:
            pytest.fail(f"{len(accepted)} uploads all accepted on a {DISK_SIZE} filesystem")
        assert accepted, "the first upload was refused: no room was left for any"
        fill(disk / "top-off")  # not a byte left
        assert free_bytes(disk) < 65536

        # While it is full (2,000 rows: more than the free space left inside the tables' last pages).
        assert_storage_full(post_csv(web.base, 2_000, 1_000))
        # A browser gets the upload form again, saying why.
        form = requests.post(
            f"{web.base}/batch/upload",
            files={"file": ("x.csv", make_csv(sample_texts(2_000, seed=1_003)))},
            headers={"Accept": "text/html"},
            timeout=60,
        )
        assert form.status_code == 507 and form.headers["Content-Type"].startswith("text/html")
        assert 'id="upload-problem"' in form.text and "Insufficient Storage" in form.text
        assert_whole(observer)
        assert one(observer, "SELECT count(*) FROM batches") == len(accepted)
        ready = requests.get(f"{web.base}/readyz", timeout=30)
        body = assert_storage_full(ready, 503)
        assert "No space left on device" in body["reason"]
        status = requests.get(f"{web.base}/batch/{accepted[0]}", timeout=30)
        assert status.status_code == 200 and status.json()["status"] == "processing"
        full_since = time.monotonic()
        # Every runner met it committing a round (not only renewing its leases).
        wait_for(lambda: all(RUNNER_REFUSED in log for log in runners.each_log()), timeout=60)
        time.sleep(HOLD_FULL_SECONDS)
        held = scored(observer)
        assert all(proc.poll() is None for proc in runners.procs), runners.logs()
        assert_storage_full(post_csv(web.base, 2_000, 1_002))

        # Space is freed: everything in flight goes on, nothing restarted.
        filler.unlink()
        freed = time.monotonic()
        wait_for(lambda: scored(observer) > held, timeout=60, interval=0.01)
        recovery = time.monotonic() - freed
        print(f"\nfrom freeing space to the first committed round: {recovery:.2f} s")
        print(*ROOM_AGAIN.findall(runners.logs()), sep="\n")
        assert requests.get(f"{web.base}/readyz", timeout=30).status_code == 200
        wait_for(
            lambda: one(observer, "SELECT count(*) FROM batches WHERE status <> 'completed'") == 0,
            timeout=120,
            interval=0.2,
        )
        for public_id in accepted:
            assert_exactly_once(observer, public_id, ROWS_PER_UPLOAD)
        assert_whole(observer)
        assert post_csv(web.base, 10, 1_001).status_code == 202
        assert all(proc.poll() is None for proc in runners.procs), runners.logs()

        # The runners waited rather than spun, and said so once per period.
        full_for = time.monotonic() - full_since
        wait_for(lambda: all(ROOM_AGAIN.search(log) for log in runners.each_log()), timeout=30)
        for log in runners.each_log():
            # At most a line a minute, and one at the end, from each of the round pipe, the lease
            # keeper and a webhook deliverer.
            assert len(DISK_LINES.findall(log)) <= 3 * (2 + full_for / LOG_PERIOD_SECONDS), log
            for _, refusals, seconds in ROOM_AGAIN.findall(log):
                assert int(refusals) <= float(seconds) + 5, log  # the tries back off to 5 s apart
            assert "Traceback" not in log, log
        assert "Traceback" not in web.logfile.read_text(errors="replace")
        # PostgreSQL itself never stopped: no PANIC, no crash restart.
        server_log = small_disk.cluster.logfile.read_text(errors="replace")
        assert "PANIC" not in server_log and "reinitializing" not in server_log, server_log[-3000:]
    finally:
        observer.close()
        runners.stop_all()
        web.stop()


def workbook(rows: int) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "text"])
    for index, text in enumerate(sample_texts(rows, seed=31)):
        sheet.append([index + 1, text])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_spool_on_a_full_disk_is_a_507_and_leaves_nothing(serve, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    metrics = tmp_path / "metrics"  # elsewhere: the counters are files in TMPDIR otherwise
    metrics.mkdir()
    with small_filesystem("64k") as spool_dir:
        web = serve(TMPDIR=str(spool_dir), PROMETHEUS_MULTIPROC_DIR=str(metrics))
        big = workbook(5_000)
        assert len(big) > 64 * 1024
        answer = requests.post(
            f"{web.base}/batch/upload", data=big, headers={"Content-Type": XLSX_MEDIA_TYPE}, timeout=60
        )
        body = assert_storage_full(answer)
        assert "temporary files" in body["detail"]
        assert_nothing_written(db)
        assert os.listdir(spool_dir) == []
        stats = os.statvfs(spool_dir)
        assert stats.f_bfree == stats.f_blocks, "the spool's bytes were not freed"
        # A workbook that fits is read from the same spool.
        small = workbook(20)
        assert len(small) < 32 * 1024
        answer = requests.post(
            f"{web.base}/batch/upload", data=small, headers={"Content-Type": XLSX_MEDIA_TYPE}, timeout=60
        )
        assert answer.status_code == 202, answer.text
        web.stop()  # before the unmount (serve stops it again, harmlessly)
    assert "Traceback" not in web.logfile.read_text(errors="replace")
