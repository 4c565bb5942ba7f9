"""Which errors mean a full disk, the problem they are to a client, and logging them once per period.

The real thing (a PostgreSQL on a filesystem that fills up) is tests/integration/test_disk_full.py;
here are the messages PostgreSQL raises outside class 53, which that test cannot provoke at will.
"""

from __future__ import annotations

import errno
import io
import logging

import psycopg
import pytest

from core.disk_full import RETRY_AFTER_SECONDS, OncePer, is_disk_full
from webapp.problems import storage_full


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (psycopg.errors.DiskFull('could not extend file "base/5/16384": No space left on device'), True),
        (psycopg.errors.DiskFull("could not write block 7 of temporary file"), True),  # by its SQLSTATE
        (
            psycopg.errors.IoError('could not write to file "pg_wal/xlogtemp.1": No space left on device'),
            True,
        ),
        (psycopg.errors.InternalError_("could not write init file"), True),
        (
            psycopg.errors.IoError('could not read block 3 in file "base/5/1": read only 0 of 8192 bytes'),
            False,
        ),
        (psycopg.OperationalError("connection to server failed: Connection refused"), False),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (ValueError("No space left on device"), False),
        (  # a constraint's DETAIL quoting a row's text is no full disk
            psycopg.errors.CheckViolation(
                'new row violates check constraint "c"\n'
                "DETAIL: Failing row contains (no space left on device)."
            ),
            False,
        ),
    ],
)
def test_what_a_full_disk_looks_like(exc: BaseException, full: bool) -> None:
    assert is_disk_full(exc) is full


def test_a_full_disk_is_a_507_with_retry_after() -> None:
    problem = storage_full(
        psycopg.errors.DiskFull('could not extend file "x": No space left on device\nHINT: …')
    )
    assert (problem.status, problem.slug) == (507, "storage-full")
    assert problem.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    assert "could not extend file …" in problem.detail and "HINT" not in problem.detail
    assert '"x"' not in problem.detail  # the database's file names are the server log's, not a client's
    spool = storage_full(OSError(errno.ENOSPC, "No space left on device", "/tmp/upload-a1b2.xlsx"))
    assert "temporary files" in spool.detail and "upload-a1b2" not in spool.detail


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_run_of_refusals_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    throttle = OncePer(logging.getLogger("test.disk_full"), "the commit", period=3600)
    full = psycopg.errors.DiskFull('could not extend file "x": No space left on device')
    for _ in range(500):
        throttle.refused(full, "tried again soon")
    assert throttle.full
    assert len(lines(caplog)) == 1
    assert "disk is full" in lines(caplog)[0] and 'could not extend file "x"' in lines(caplog)[0]
    throttle.cleared()
    throttle.cleared()
    assert not throttle.full
    assert len(lines(caplog)) == 2
    assert "went through after 500 refusal(s)" in lines(caplog)[1]
    # The next run within the period shares its one line: nothing more, even when it ends.
    throttle.refused(full, "tried again soon")
    throttle.cleared()
    assert len(lines(caplog)) == 2


def test_a_run_longer_than_the_period_says_so_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    throttle = OncePer(logging.getLogger("test.disk_full"), "the commit", period=0, quiet_after=3600)
    full = OSError(errno.ENOSPC, "No space left on device")
    for _ in range(3):
        throttle.refused(full, "tried again soon")
    messages = lines(caplog)
    assert len(messages) == 3
    assert "disk is full" in messages[0]
    assert all("still full" in message and "1 time(s)" in message for message in messages[1:])


def test_the_spool_stops_at_the_byte_limit() -> None:
    from webapp.problems import Problem
    from webapp.upload.workbook_archive import spool_pieces

    spool = io.BytesIO()
    spool_pieces([b"x" * 10] * 3, spool, 30)
    assert spool.getvalue() == b"x" * 30
    spool = io.BytesIO()
    with pytest.raises(Problem) as refused:
        spool_pieces([b"x" * 10] * 4, spool, 30)
    assert (refused.value.status, refused.value.slug) == (413, "upload-too-large")
    assert len(spool.getvalue()) == 30  # the piece past the limit was never written
