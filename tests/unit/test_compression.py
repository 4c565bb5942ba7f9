"""webapp.compression without a server: inflating in bounded pieces whatever the input's cut,
members, truncation and the byte limit; deflating write by write."""

from __future__ import annotations

import gzip
import zlib

import pytest

from webapp.problems import Problem
from webapp.upload.compression import deflated, gunzipped, inflated
from webapp.upload.request_body import PIECE_SIZE

DATA = b"id,text\n" + b"".join(b"%d,%s\n" % (n, b"so good " * (n % 50)) for n in range(20_000))


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 1000, PIECE_SIZE, 1024 * 1024])
def test_inflating_gives_the_data_back_in_bounded_pieces_however_the_input_is_cut(size):
    compressed = gzip.compress(DATA)
    source = cut(compressed, size) if size > 1 else [*cut(compressed[:5000], 1), compressed[5000:]]
    pieces = list(inflated(source, len(DATA), "test"))
    assert b"".join(pieces) == DATA
    assert max(len(piece) for piece in pieces) <= PIECE_SIZE


def test_a_highly_compressed_piece_is_drained_in_full():
    """One small piece that inflates to many PIECE_SIZEs: nothing is left inside zlib."""
    zeros = b"id,text\n" + b"1," + b"x" * (10 * PIECE_SIZE) + b"\n"
    pieces = list(inflated([gzip.compress(zeros)], len(zeros), "test"))
    assert b"".join(pieces) == zeros and len(pieces) > 10


def test_members_are_one_file_wherever_they_are_cut():
    members = gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:])
    for size in (3, 999, len(members)):
        assert b"".join(inflated(cut(members, size), len(DATA), "test")) == DATA


def test_the_limit_counts_inflated_bytes():
    compressed = [gzip.compress(DATA)]
    assert b"".join(inflated(compressed, len(DATA), "test")) == DATA
    with pytest.raises(Problem) as refused:
        list(inflated(compressed, len(DATA) - 1, "The file"))
    assert (refused.value.status, refused.value.slug) == (413, "upload-too-large")


@pytest.mark.parametrize("keep", [1, 2, 10, 100, -8, -1])
def test_a_cut_short_stream_is_invalid(keep):
    compressed = gzip.compress(DATA[:3000])
    with pytest.raises(Problem) as refused:
        list(inflated([compressed[:keep]], 10**9, "test"))
    assert (refused.value.status, refused.value.slug) == (400, "invalid-gzip")


def test_other_bytes_pass_through_untouched():
    assert list(gunzipped([b"i", b"d,", b"text\n1,a\n"], 10)) == [b"id,", b"text\n1,a\n"]
    assert list(gunzipped([], 10)) == []
    assert b"".join(gunzipped([b"\x1f", gzip.compress(b"id,text\n")[1:]], 100)) == b"id,text\n"


def test_deflated_writes_each_inflate_at_once_to_their_block():
    blocks = cut(DATA, PIECE_SIZE)
    writes = list(deflated(iter(blocks)))
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for block, write in zip(blocks, writes, strict=False):
        assert inflater.decompress(write) == block  # flushed: nothing of the block held back
    assert inflater.decompress(b"".join(writes[len(blocks) :])) == b"" and inflater.eof
    assert gzip.decompress(b"".join(writes)) == DATA
