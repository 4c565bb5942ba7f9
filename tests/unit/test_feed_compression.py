"""Shared frames and deflated follow streams without a server: frames shared between streams are
compressed once, runs of them are made once a turn, and every stream, whole or cut, inflates to
exactly its own frames."""

from __future__ import annotations

import threading
import zlib

from hypothesis import given
from hypothesis import strategies as st

from webapp.feed.compression import Piece, adler32_combine, deflate
from webapp.feed.encoding import Deflate, Identity
from webapp.feed.frames import Runs, SharedFrame
from webapp.feed.stream import Stream


@given(st.binary(max_size=3_000), st.binary(max_size=70_000))
def test_combined_adler32_is_the_adler32_of_the_concatenation(first, second):
    combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


def _chunks() -> list[SharedFrame]:
    rows = [f'{{"row":{n},"text":"review number {n} was {"good" if n % 3 else "bad"}"}}' for n in range(300)]
    items = [",".join(rows[k * 100 : k * 100 + 100]) for k in range(3)]
    return [
        SharedFrame(f'event: rows\nid: 1.{k}\ndata: {{"rows":[{items[k]}]}}\n\n'.encode()) for k in range(3)
    ]


def test_streams_sharing_frames_each_inflate_to_their_own_frames_and_share_the_deflated_bytes():
    start, (one, two, three) = SharedFrame(b"retry: 1000\n\n"), _chunks()
    first = [start, b"event: progress\ndata: {}\n\n", one, two, three, b"event: end\ndata: {}\n\n"]
    second = [start, b'event: progress\ndata: {"a":1}\n\n', two, three]  # resumed after the first chunk
    sent: list[list[bytes]] = []
    for frames in (first, second):
        encoder = Deflate()
        sent.append([encoder.encode(frame) for frame in frames] + [encoder.end()])
        raw = b"".join(Identity().encode(frame) for frame in frames)
        assert zlib.decompress(b"".join(sent[-1])) == raw  # zlib checks the Adler-32 too
    assert sent[0][3] is sent[1][2] and sent[0][4] is sent[1][3]  # two and three: deflated once
    assert len(two.piece.data) * 3 < len(two)


def test_a_cut_stream_inflates_to_every_frame_it_was_sent():
    encoder, frames = Deflate(), _chunks()
    inflater = zlib.decompressobj()
    got = b"".join(inflater.decompress(encoder.encode(frame)) for frame in frames)
    assert got == b"".join(frame.raw for frame in frames) and not inflater.eof


def test_a_stream_ended_before_any_frame_is_an_empty_zlib_stream():
    assert zlib.decompress(Deflate().end()) == b""


def test_a_chunked_deflated_body_ends_with_the_zlib_end_then_the_last_chunk():
    stream = Stream(None, None, None, True, True, None, Deflate())  # type: ignore[arg-type]
    frames = _chunks()
    stream.queue([*frames, b""])
    stream.finish()
    body, parts = b"".join(stream.out), []
    while True:
        size, _, body = body.partition(b"\r\n")
        parts.append(body[: int(size, 16)])
        assert body[int(size, 16) : int(size, 16) + 2] == b"\r\n"
        body = body[int(size, 16) + 2 :]
        if size == b"0":
            break
    assert body == b"" and parts[-1] == b"" and len(parts) == len(frames) + 2
    assert zlib.decompress(b"".join(parts)) == b"".join(frame.raw for frame in frames)
    assert stream.queued == sum(len(part) for part in stream.out)


def test_runs_join_each_stretch_of_shared_frames_once_for_every_stream():
    one, two, three = _chunks()
    runs, own = Runs(), b"event: progress\ndata: {}\n\n"
    first = runs.join([own, one, two, three, b"", b"event: end\ndata: {}\n\n"])
    second = runs.join([one, two, three])
    assert len(first) == 3 and first[0] is own and first[1] is second[0]  # the run, made once
    assert runs.join([own, two]) == [own, two]  # a frame alone stays itself
    raw = b"".join(Identity().encode(frame) for frame in first)
    assert raw == own + one.raw + two.raw + three.raw + b"event: end\ndata: {}\n\n"
    encoder = Deflate()
    deflated = b"".join(encoder.encode(frame) for frame in first) + encoder.end()
    assert (
        zlib.decompress(deflated) == raw
        and first[1].piece.data == one.piece.data + two.piece.data + three.piece.data
    )
    runs.clear()
    assert runs.join([one, two, three])[0] is not second[0]


def test_an_http10_deflated_body_is_the_zlib_stream_alone_whole_only_once_finished():
    stream = Stream(None, None, None, True, False, None, Deflate())  # type: ignore[arg-type]
    frames = _chunks()
    stream.queue([b"", *frames])  # an empty first frame: skipped, the header still comes once
    inflater = zlib.decompressobj()
    assert inflater.decompress(b"".join(stream.out)) == b"".join(frame.raw for frame in frames)
    assert not inflater.eof  # cut here, the body ends at the close and the inflater says so
    stream.finish()
    assert zlib.decompress(b"".join(stream.out)) == b"".join(frame.raw for frame in frames)


def test_pieces_deflated_by_many_threads_at_once_each_inflate_alone():
    frames = [f"event: rows\ndata: {n} {'x' * (n % 700)}\n\n".encode() * 20 for n in range(400)]
    pieces: dict[int, Piece] = {}

    def work(offset: int) -> None:
        for n in range(offset, len(frames), 4):
            pieces[n] = deflate(frames[n])

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, frame in enumerate(frames):
        assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(pieces[n].data) == frame
        assert (pieces[n].adler, pieces[n].size) == (zlib.adler32(frame), len(frame))
