"""What goes over the wire: an upload's multipart body, streamed from the file, and a download
inflated (and filtered by sentiment) as it arrives.

The form's fields come before the file part, because the service reads the
upload as it arrives: ``metadata`` (a JSON object) and ``callback_url`` are
sent only when given. The file is sent as it is, a ``.csv.gz`` too (the
service inflates gzip files), with a Content-Type by its first bytes and its
suffix (:func:`media_type`). Downloads ask for ``Accept-Encoding: gzip``
and inflate block by block; neither way is a whole file held in memory.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
#: The file part's Content-Type by the file's suffix (text/csv for any other).
MEDIA_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}


@dataclass(frozen=True)
class Form:
    """A multipart/form-data body: its Content-Type and length, and a maker of its bytes."""

    content_type: str
    length: int
    body: Callable[[], Iterator[bytes]]


def upload_form(path: Path, fields: dict[str, str], on_bytes: Callable[[int], None]) -> Form:
    """The form that uploads ``path`` after ``fields``; ``on_bytes`` hears of every block of the file
    as it is sent. The body can be made again for a retry; the boundary stays the same."""
    boundary = f"sentiment-{uuid.uuid4().hex}"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    file_type = media_type(path)
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{_quoted(path.name)}"\r\n'
        f"Content-Type: {file_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = os.path.getsize(path)

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as file:
            while block := file.read(BLOCK):
                on_bytes(len(block))
                yield block
        yield tail

    return Form(f"multipart/form-data; boundary={boundary}", len(head) + size + len(tail), body)


def media_type(path: Path) -> str:
    """The file part's Content-Type: gzip by the file's first bytes, then by its suffix: an
    ``.xlsx`` workbook, JSON lines (``.jsonl``), else CSV."""
    with path.open("rb") as file:
        if file.read(2) == GZIP_MAGIC:
            return "application/gzip"
    return MEDIA_TYPES.get(path.suffix.lower(), "text/csv")


def _quoted(name: str) -> str:
    """A file name as browsers put it in a form (WHATWG: ``"``, CR and LF percent-encoded)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class Inflated(io.RawIOBase):
    """A download's bytes, inflated when the answer came gzip-compressed."""

    def __init__(self, answer: BinaryIO, gzipped: bool) -> None:
        self._answer = answer
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._pending = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._ended:
            block = self._answer.read(BLOCK)
            if self._inflater is None:
                self._pending, self._ended = block, not block
            elif block:
                self._pending = self._inflater.decompress(block)
            else:
                self._ended = True
                if not self._inflater.eof:
                    raise OSError("the download ended before the end of its gzip data")
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def copy_results(source: io.RawIOBase, out: BinaryIO, sentiment: str | None) -> int | None:
    """Copy a results.csv download to ``out``, keeping only the rows of ``sentiment`` if given (the
    header always, and then the number of rows kept is returned)."""
    if sentiment is None:
        while block := source.read(BLOCK):
            out.write(block)
        return None
    text = io.TextIOWrapper(io.BufferedReader(source, BLOCK), encoding="utf-8", newline="")
    writer_stream = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        reader = csv.reader(text)
        writer = csv.writer(writer_stream, lineterminator="\n")
        header = next(reader, None)
        if header is None:
            return 0
        writer.writerow(header)
        column = header.index("sentiment")
        rows = 0
        for record in reader:
            if len(record) > column and record[column] == sentiment:
                writer.writerow(record)
                rows += 1
        return rows
    finally:
        writer_stream.detach()  # leave ``out`` open: it may be stdout
