"""gzip both ways: uploads inflated as they stream (under MAX_UPLOAD_BYTES and MAX_ROWS counted on
the inflated data), corrupt gzip refused, and the results downloads gzip-compressed when asked.

The bomb test runs against a real gunicorn with the default limits: a body of about 30 KB that
inflates to 10 GiB, refused at the limit, with the worker's peak memory read from /proc.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import requests

from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import (
    PROBLEM,
    assert_nothing_written,
    assert_problem,
    post_file,
    score_everything,
    table_counts,
)
from webapp import create_app

MIB = 1024 * 1024
GZIP_WBITS = 16 + zlib.MAX_WBITS


GZ_NAME = "reviews.csv.gz"


def stored_texts(db) -> list[str]:
    """The texts the upload wrote to batch_inputs, in file order."""
    return [text for (text,) in db.execute("SELECT text FROM batch_inputs ORDER BY row_number")]


CSV = make_csv(sample_texts(3_000, seed=5))
TEXTS = sample_texts(3_000, seed=5)


def _two_members(data: bytes) -> bytes:
    """``cat a.gz b.gz``: two gzip members cut in the middle of a line."""
    half = len(data) // 2 + 7
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda c: post_file(c, gzip.compress(CSV), GZ_NAME), id="form-file-gz"),
        pytest.param(lambda c: post_file(c, _two_members(CSV), GZ_NAME), id="form-file-two-members"),
        pytest.param(
            lambda c: c.post(
                "/batch/upload",
                data=gzip.compress(CSV),
                headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
            ),
            id="raw-content-encoding",
        ),
        pytest.param(
            lambda c: c.post("/batch/upload", data=gzip.compress(CSV), content_type="text/csv"),
            id="raw-gz-by-magic",
        ),
        pytest.param(
            # Content-Encoding over the whole form, holding a .csv.gz: both are inflated.
            lambda c: c.post(
                "/batch/upload",
                data=gzip.compress(_form(gzip.compress(CSV))),
                headers={
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Encoding": "gzip",
                },
            ),
            id="gzip-form-holding-gz",
        ),
    ],
)
def test_gzip_uploads_are_inflated(client, db, send):
    answer = send(client)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["total_count"] == 3_000
    assert stored_texts(db) == TEXTS


BOUNDARY = "b0undary"


def _form(file_bytes: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="r.csv.gz"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        + file_bytes
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _bad_block(data: bytes) -> bytes:
    """The first deflate block's type made the reserved one (BFINAL 1, BTYPE 11)."""
    return data[:10] + b"\x07" + data[11:]


def _damaged(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x55 for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (gzip.compress(CSV)[:-100], "truncated"),
        (gzip.compress(CSV)[:-4], "truncated"),  # all but ISIZE of the trailer
        (_bad_block(gzip.compress(CSV)), "invalid block type"),
        (gzip.compress(CSV)[:-8] + b"\0\0\0\0" + gzip.compress(CSV)[-4:], "incorrect data check"),  # CRC
        (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "not valid gzip"),
    ],
)
def test_corrupt_or_truncated_gzip_is_a_400_and_nothing_is_stored(client, db, body, needle):
    for answer in (
        post_file(client, body, GZ_NAME),
        client.post(
            "/batch/upload", data=body, headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"}
        ),
    ):
        problem = assert_problem(answer, 400, "invalid-gzip")
        assert needle in problem["detail"] and "nothing was stored" in problem["detail"]
    assert_nothing_written(db)


def test_damage_that_still_inflates_is_refused_by_whichever_check_sees_it_first(client, db):
    """Bytes flipped mid-stream may inflate to something: then the CSV rules or, at the latest,
    the CRC-32 at the end refuse the file. Either way a 400, and nothing is stored."""
    for answer in (
        post_file(client, _damaged(gzip.compress(CSV)), GZ_NAME),
        post_file(client, gzip.compress(CSV)[:-8] + b"\0\0\0\0" + gzip.compress(CSV)[-4:], GZ_NAME),
    ):
        assert answer.status_code == 400 and answer.mimetype == PROBLEM
    assert_nothing_written(db)


def test_content_encoding_gzip_on_a_plain_body_is_a_400(client, db):
    answer = client.post(
        "/batch/upload", data=CSV, headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"}
    )
    problem = assert_problem(answer, 400, "invalid-gzip")
    assert "Content-Encoding: gzip" in problem["detail"] and "incorrect header check" in problem["detail"]
    assert_nothing_written(db)


@pytest.mark.parametrize("coding", ["br", "deflate", "compress", "zstd", "gzip, gzip"])
def test_other_content_encodings_are_a_415(client, db, coding):
    answer = client.post(
        "/batch/upload", data=CSV, headers={"Content-Type": "text/csv", "Content-Encoding": coding}
    )
    problem = assert_problem(answer, 415, "unsupported-content-encoding")
    assert repr(coding) in problem["detail"]
    assert_nothing_written(db)


def test_identity_is_the_body_as_it_is(client, db):
    answer = client.post(
        "/batch/upload", data=CSV, headers={"Content-Type": "text/csv", "Content-Encoding": "identity"}
    )
    assert answer.status_code == 202 and answer.get_json()["total_count"] == 3_000


@pytest.fixture
def small_limits_client(database_url):
    """The app with MAX_UPLOAD_BYTES 200,000 and MAX_ROWS 1,000."""
    app = create_app(
        {
            "database_url": database_url,
            "migrate_on_start": False,
            "max_upload_bytes": 200_000,
            "max_rows": 1_000,
        }
    )
    yield app.test_client()
    app.extensions["db_pool"].close()


def test_limits_count_the_inflated_data(small_limits_client, db):
    client = small_limits_client
    rows = make_csv(sample_texts(1_001, seed=2))
    assert len(gzip.compress(rows)) < 200_000 and len(rows) < 200_000
    problem = assert_problem(post_file(client, gzip.compress(rows), GZ_NAME), 413, "too-many-rows")
    assert "1,000" in problem["detail"]
    big = b"id,text\n" + b"".join(b"%d,a fine review of the product\n" % n for n in range(900))
    big += b"901," + b"great " * 40_000 + b"\n"  # 240 KB inflated, 1 KB compressed
    assert len(gzip.compress(big)) < 5_000 < 200_000 < len(big)
    for answer in (
        post_file(client, gzip.compress(big), GZ_NAME),
        client.post(
            "/batch/upload",
            data=gzip.compress(big),
            headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
        ),
    ):
        problem = assert_problem(answer, 413, "upload-too-large")
        assert "200,000" in problem["detail"] and "decompressed" in problem["detail"]
    assert_nothing_written(db)
    assert post_file(client, gzip.compress(make_csv(sample_texts(1_000))), GZ_NAME).status_code == 202


# --- the bomb ---------------------------------------------------------------------------------

#: One data row of 1 MiB: its text is past MAX_TEXT_CHARS, so the server sets each aside (a row
#: of a few bytes in batch_inputs) instead of storing 1 MiB: the test is about inflating, not storing.
BOMB_ROW = b"1," + b"x" * (MIB - 3) + b"\n"
BOMB_ROWS = 10 * 1024  # 10 GiB


def bomb_file() -> Iterator[bytes]:
    """A valid gzip file of a CSV of 10 GiB (a header and BOMB_ROWS rows), streamed.

    Each row goes through zlib with a full flush, which resets the compressor: every row after
    the first compresses to the same 1 KB, so zlib is run on two rows and those bytes repeated.
    The trailer's CRC-32 is computed over all 10 GiB (a few seconds), so the file is valid gzip
    to its last byte."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, GZIP_WBITS)
    yield compressor.compress(b"id,text\n") + compressor.flush(zlib.Z_FULL_FLUSH)
    first = compressor.compress(BOMB_ROW) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(BOMB_ROW) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first == again  # the full flush made the compressed row independent of what came before
    for _ in range(BOMB_ROWS):
        yield first
    final = compressor.flush()  # an empty last block, then the trailer of the two rows compressed
    crc = zlib.crc32(b"id,text\n")
    for _ in range(BOMB_ROWS):
        crc = zlib.crc32(BOMB_ROW, crc)
    size = len(b"id,text\n") + BOMB_ROWS * len(BOMB_ROW)
    yield final[:-8] + crc.to_bytes(4, "little") + (size % 2**32).to_bytes(4, "little")


@cache
def bomb_body() -> tuple[bytes, int]:
    """The bomb file, gzip-compressed once more as the body's Content-Encoding, and the file's size."""
    outer = zlib.compressobj(9, zlib.DEFLATED, GZIP_WBITS)
    body, file_bytes = [], 0
    for piece in bomb_file():
        file_bytes += len(piece)
        body.append(outer.compress(piece))
    body.append(outer.flush())
    return b"".join(body), file_bytes


def test_the_bomb_file_inflates_to_10_gib():
    """What the bomb test sends is what it says, checked by inflating it here, piece by piece."""
    body, file_bytes = bomb_body()
    assert len(body) < MIB < file_bytes < 12 * MIB
    outer = zlib.decompressobj(GZIP_WBITS)
    inner = zlib.decompressobj(GZIP_WBITS)
    inflated = 0
    data = outer.decompress(body)
    assert outer.eof and len(data) == file_bytes
    view = memoryview(data)
    for start in range(0, len(view), 64 * 1024):
        chunk = view[start : start + 64 * 1024]
        while chunk:
            out = inner.decompress(chunk, 4 * MIB)
            inflated += len(out)
            chunk = inner.unconsumed_tail
    assert inner.eof and inner.unused_data == b""  # the CRC-32 and the length matched
    assert inflated == len(b"id,text\n") + BOMB_ROWS * len(BOMB_ROW) > 10 * 1024**3


def _worker_peak_rss(master_pid: int) -> int:
    """Peak resident memory (VmHWM, bytes) of the gunicorn master's one worker."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    assert len(children) == 1, children
    status = Path(f"/proc/{children[0]}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


#: Generous: the worker peaked at 60 MB in this test (49 MB before the bomb), and would need
#: over 1 GiB to hold the inflated body up to the limit, let alone the 10 GiB of the bomb.
PEAK_RSS_BOUND = 256 * MIB


def test_a_gzip_bomb_is_refused_at_the_limit_in_bounded_memory(serve, db):
    web = serve()  # the defaults: MAX_UPLOAD_BYTES 1 GiB, MAX_ROWS 10,000,000, one worker
    body, _ = bomb_body()
    warm = requests.post(
        f"{web.base}/batch/upload",
        data=gzip.compress(CSV),
        headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
        timeout=120,
    )
    assert warm.status_code == 202
    before = _worker_peak_rss(web.proc.pid)
    stored = table_counts(db)
    answer = requests.post(
        f"{web.base}/batch/upload",
        data=body,
        headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
        timeout=600,
    )
    assert answer.status_code == 413, answer.text[:500]
    assert answer.headers["Content-Type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == "/problems/upload-too-large"
    assert "1,073,741,824" in problem["detail"] and "decompressed" in problem["detail"]
    assert_nothing_written(db, before=stored)  # nothing of the bomb was stored
    peak = _worker_peak_rss(web.proc.pid)
    assert peak < PEAK_RSS_BOUND, (before, peak)
    # The worker is still there and serving.
    assert requests.get(f"{web.base}/healthz", timeout=30).status_code == 200


# --- downloads --------------------------------------------------------------------------------


@pytest.fixture
def finished_batch(serve, db):
    """A real gunicorn and a finished batch of 20,000 rows (a few MB of CSV)."""
    web = serve()
    answer = requests.post(
        f"{web.base}/batch/upload",
        data=make_csv(sample_texts(20_000, seed=9)),
        headers={"Content-Type": "text/csv"},
        timeout=120,
    )
    assert answer.status_code == 202, answer.text
    score_everything(db)
    return web, answer.json()["batch_id"]


@pytest.mark.parametrize("extension", ["csv", "ndjson"])
def test_downloads_are_gzip_when_accepted_and_still_streamed(finished_batch, extension):
    web, batch_id = finished_batch
    url = f"{web.base}/batch/{batch_id}/results.{extension}"
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=120)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]
    assert len(plain.content) > 1_000_000

    with requests.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=120) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in answer.headers["Vary"]
        assert answer.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in answer.headers
        chunks = list(answer.raw.read_chunked(decode_content=False))
    # Every write is compressed and flushed on its own: each inflates at once, to whole blocks of
    # the download (64 KiB, the last shorter), so nothing was held back to be sent at the end.
    inflater = zlib.decompressobj(GZIP_WBITS)
    inflated = []
    for chunk in chunks:
        inflated.append(inflater.decompress(chunk))
    assert inflater.eof
    body = b"".join(inflated)
    assert body == plain.content
    sizes = [len(piece) for piece in inflated if piece]
    assert len(sizes) == -(-len(body) // (64 * 1024))
    assert set(sizes[:-1]) == {64 * 1024}
    assert sum(len(chunk) for chunk in chunks) < len(body) / 3


def test_requests_reads_the_gzip_download_transparently(finished_batch):
    web, batch_id = finished_batch
    url = f"{web.base}/batch/{batch_id}/results.csv"
    compressed = requests.get(url, timeout=120)  # requests sends Accept-Encoding: gzip, deflate
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert (
        compressed.content == requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=120).content
    )
    refused = requests.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"}, timeout=120)
    assert "Content-Encoding" not in refused.headers
