"""gzip both ways: uploads inflated as they stream, downloads deflated block by block.

A body sent with ``Content-Encoding: gzip`` is inflated before anything reads it; any coding but
gzip and ``identity`` is a 415 before the body is read. Then the file itself (the form's ``file``
part, or the raw body) is inflated when it starts with gzip's magic bytes, whatever its name:
``reviews.csv.gz`` is accepted as it is. Inflating holds at most one PIECE_SIZE of output and
stops with a 413 once the output passes MAX_UPLOAD_BYTES (the compressed bytes count against the
same limit in :func:`~webapp.upload.request_body.read_body`), so a small body that would inflate
to 10 GB is refused at the limit. Corrupt or truncated gzip is a 400 ``invalid-gzip``; members
concatenated (``cat a.gz b.gz``) are one file, as gzip reads them. :func:`deflated` compresses
and flushes each block of a download, so every write carries all the rows handed to it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from itertools import chain

from webapp.problems import Problem
from webapp.upload.request_body import PIECE_SIZE, bad_request

GZIP_MAGIC = b"\x1f\x8b"
#: zlib's window bits for the gzip wrapper (header and CRC-32 trailer).
GZIP_WBITS = 16 + zlib.MAX_WBITS
#: Content-Encoding values an upload may carry ("x-gzip" is gzip's old name, RFC 9110 8.4.1.3).
GZIP_CODINGS = ("gzip", "x-gzip")
#: Compression level of downloads. On 25 MB of results.csv-like rows (64 KiB blocks, each flushed):
#: level 4 makes it 4.9x smaller in 0.26 s of CPU, zlib's default 6 5.7x in 1.15 s, level 1 4.5x.
DOWNLOAD_LEVEL = 4


def content_decoded(pieces: Iterable[bytes], content_encoding: str | None, max_bytes: int) -> Iterable[bytes]:
    """The body with its Content-Encoding undone; a 415 at once (nothing read) for a coding
    other than gzip or identity."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in GZIP_CODINGS:
        return inflated(pieces, max_bytes, "The request body (Content-Encoding: gzip)")
    if coding == "identity":
        return pieces
    raise Problem(
        415,
        "Unsupported content encoding",
        f"Content-Encoding {content_encoding!r} is not supported: send the body as it is, or "
        "compressed with gzip (Content-Encoding: gzip).",
        "unsupported-content-encoding",
    )


def gunzipped(pieces: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """The file's bytes; inflated if they start with gzip's magic bytes."""
    pieces = iter(pieces)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= len(GZIP_MAGIC):
            break
    if head.startswith(GZIP_MAGIC):
        yield from inflated(chain([head], pieces), max_bytes, "The file (gzip)")
        return
    if head:
        yield head
    yield from pieces


def inflated(pieces: Iterable[bytes], max_bytes: int, what: str) -> Iterator[bytes]:
    """What gzip ``pieces`` inflate to, in pieces of at most PIECE_SIZE bytes; 413 once that
    passes ``max_bytes``, 400 if the gzip data is corrupt or ends early."""
    decompressor = zlib.decompressobj(GZIP_WBITS)
    started = False  # whether the current member has been given any bytes
    received = produced = 0
    for piece in pieces:
        received += len(piece)
        data = piece
        while True:
            started = started or bool(data)
            try:
                out = decompressor.decompress(data, PIECE_SIZE)
            except zlib.error as exc:
                raise _corrupt(what, received, str(exc)) from exc
            produced += len(out)
            if produced > max_bytes:
                raise Problem(
                    413,
                    "Upload too large",
                    f"{what} inflates to more than the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES "
                    f"applies to the decompressed data too); refused after {received:,} compressed "
                    "bytes, nothing was stored.",
                    "upload-too-large",
                )
            if out:
                yield out
            if decompressor.eof:  # a member ended: what follows is the next one
                data = decompressor.unused_data
                decompressor, started = zlib.decompressobj(GZIP_WBITS), False
                if data:
                    continue
                break
            data = decompressor.unconsumed_tail
            # A full piece may leave output pending inside zlib even with no input left.
            if not data and len(out) < PIECE_SIZE:
                break
    if started:
        raise _corrupt(what, received, "it ends before the end of its compressed data (truncated)")
    if received == 0:
        raise bad_request("invalid-gzip", f"{what} is empty: there is no gzip data to inflate.")


def _corrupt(what: str, received: int, reason: str) -> Problem:
    return bad_request(
        "invalid-gzip",
        f"{what} is not valid gzip data: {reason} (within its first {received:,} compressed bytes); "
        "nothing was stored.",
    )


def deflated(blocks: Iterable[bytes], level: int = DOWNLOAD_LEVEL) -> Iterator[bytes]:
    """gzip of the blocks, one compressed and flushed write per block (none held back)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
    for block in blocks:
        out = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if out:
            yield out
    yield compressor.flush()
