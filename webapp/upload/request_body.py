"""The upload's bytes, streamed from the request body in 64 KiB pieces (read 1 MiB at a time).

For ``multipart/form-data`` the pieces go through werkzeug's incremental multipart decoder: form
fields before the file part are collected (an HTML form sends its options there), the ``file``
part's bytes are passed on as they arrive, and what follows the file is checked once it is read
(a second file is an error). A raw CSV body is the file. Nothing here holds more than a few pieces.
A body cut short or unreadable is a 400 ``truncated-body``, a client too slow for the worker's
limits (:mod:`webapp.server.worker`) a 408 ``client-timeout``: either aborts the upload's
transaction, so nothing is stored.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from webapp.problems import Problem
from webapp.server.client_limits import ClientTimeout

# The body is read 1 MiB at a time: gunicorn reads ahead up to 1 MiB and copies
# what it has not handed out yet again on every read, so smaller reads cost
# many copies. It is handed on in 64 KiB pieces, which stay in the CPU's cache
# through decoding and parsing.
READ_SIZE = 1024 * 1024
PIECE_SIZE = 64 * 1024
MAX_FORM_FIELDS = 20
# A field holds an option or the metadata (16 pairs of up to 64 + 512 characters, as JSON).
MAX_FORM_FIELD_BYTES = 64 * 1024
MAX_FORM_MEMORY = 256 * 1024
# A refused browser upload is read on a little before the answer (see drain).
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 5.0
DRAIN_READ = 8 * 1024


def bad_request(slug: str, detail: str, status: int = 400, title: str = "Invalid upload") -> Problem:
    return Problem(status, title, detail, slug)


def too_large(max_bytes: int) -> Problem:
    return bad_request(
        "upload-too-large",
        f"The upload is larger than the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES).",
        413,
        "Upload too large",
    )


def client_timeout(detail: str) -> Problem:
    return Problem(408, "Request Timeout", detail, "client-timeout")


def read_body(
    stream: io.RawIOBase | io.BufferedIOBase, max_bytes: int, expected: int | None = None
) -> Iterator[bytes]:
    """The request body in pieces, stopping with 413 once it passes ``max_bytes``
    (the rest is never read); 400 if it ends before the ``expected`` Content-Length,
    or cannot be read to its end; 408 if the client is too slow."""
    seen = 0
    while True:
        try:
            block = stream.read(READ_SIZE)
        except TimeoutError as exc:
            detail = (
                str(exc) if isinstance(exc, ClientTimeout) else "The client was too slow sending the body."
            )
            raise client_timeout(detail) from exc
        except Exception as exc:  # the server's reader: a chunk cut short or malformed, a reset
            raise bad_request(
                "truncated-body",
                f"The request body could not be read to its end: it broke after byte {seen:,} and by "
                f"byte {seen + READ_SIZE:,} ({type(exc).__name__}: {str(exc)[:200]}); nothing was stored.",
            ) from exc
        if not block:
            if expected is not None and seen < expected:
                raise bad_request(
                    "truncated-body",
                    f"The body ended after {seen:,} of the {expected:,} bytes its Content-Length "
                    "announced; nothing was stored.",
                )
            return
        seen += len(block)
        if seen > max_bytes:
            raise too_large(max_bytes)
        for start in range(0, len(block), PIECE_SIZE):
            yield block[start : start + PIECE_SIZE]


@dataclass
class MultipartFile:
    """The ``file`` part of a form: its name, headers, the fields sent before it, its bytes."""

    filename: str | None
    headers: Headers
    fields: dict[str, str] = field(default_factory=dict)
    data: Iterator[bytes] = field(default_factory=lambda: iter(()))


def open_multipart(pieces: Iterable[bytes], content_type: str) -> MultipartFile:
    """Find the ``file`` part of a multipart body and stream its bytes."""
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise bad_request("invalid-multipart", "The multipart/form-data body has no boundary parameter.")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=MAX_FORM_MEMORY)
    events = _events(decoder, _steady_pieces(pieces))
    fields: dict[str, str] = {}
    current_field: str | None = None
    try:
        for event in events:
            if isinstance(event, File):
                if event.name == "file":
                    return MultipartFile(event.filename, event.headers, fields, _file_data(events))
                current_field = None
            elif isinstance(event, Field):
                if len(fields) >= MAX_FORM_FIELDS:
                    raise bad_request("invalid-multipart", "The form has too many fields.")
                current_field = event.name
                if current_field in fields:  # which one would count? neither silently
                    raise bad_request(
                        "invalid-multipart", f"The form field {current_field!r} is given twice."
                    )
                fields[current_field] = ""
            elif isinstance(event, Data) and current_field is not None:
                fields[current_field] += event.data.decode("utf-8", "replace")
                if len(fields[current_field]) > MAX_FORM_FIELD_BYTES:
                    raise bad_request("invalid-multipart", f"The form field {current_field!r} is too long.")
    except ValueError as exc:
        raise _malformed(exc) from exc
    raise bad_request(
        "missing-file", "The form has no file field named 'file'. Send the CSV as -F 'file=@data.csv'."
    )


def _malformed(exc: Exception) -> Problem:
    return bad_request("invalid-multipart", f"The multipart/form-data body is malformed: {exc}.")


def _events(decoder: MultipartDecoder, source: Iterator[bytes]) -> Iterator[object]:
    while True:
        event = decoder.next_event()
        if isinstance(event, NeedData):
            decoder.receive_data(next(source, None))
            continue
        yield event
        if isinstance(event, Epilogue):
            return


#: Form fields that change how the file is read or what the batch is, so they must arrive before it.
OPTION_FIELDS = (
    "strict",
    "encoding",
    "metadata",
    "expires_after",
    "callback_url",
    "sheet",
    "text_column",
    "id_column",
)
#: Options an HTML form offers as text fields, which a browser sends empty when left blank: such a
#: form field counts as not given (webapp.api; an empty query parameter is still refused).
BLANK_MEANS_UNSET = ("text_column", "id_column", "sheet")


def _file_data(events: Iterator[object]) -> Iterator[bytes]:
    """The file part's bytes; then the rest of the form, which must hold no other file
    and no option that came too late to apply."""
    try:
        for event in events:
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    break
        for event in events:
            if isinstance(event, File):
                raise bad_request(
                    "several-files",
                    f"The form holds more than one file (also {event.filename!r} in field "
                    f"{event.name!r}); send one CSV per upload.",
                )
            if isinstance(event, Field) and event.name in OPTION_FIELDS:
                raise bad_request(
                    "option-after-file",
                    f"The form field {event.name!r} comes after the file, too late to apply; send it "
                    f"before the file (curl -F '{event.name}=...' -F 'file=@data.csv') or in the query "
                    f"string (?{event.name}=...).",
                )
    except ValueError as exc:
        raise _malformed(exc) from exc


def drain(stream: io.RawIOBase | io.BufferedIOBase, max_bytes: int) -> None:
    """Read and drop what is left of a refused request body: at most DRAIN_BYTES (or
    ``max_bytes`` if smaller), for at most about DRAIN_SECONDS.

    A browser that is still sending when the answer comes may show a reset
    connection instead of the answer; reading the rest first avoids that for
    bodies of a few MiB. A larger one is left unread: the server closes the
    connection after the answer (and lingers a moment to read what is in
    flight), rather than receive up to MAX_UPLOAD_BYTES of a file it refused.
    """
    deadline = time.monotonic() + DRAIN_SECONDS
    limit = min(max_bytes, DRAIN_BYTES)
    seen = 0
    try:
        while seen <= limit and time.monotonic() < deadline and (piece := stream.read(DRAIN_READ)):
            seen += len(piece)
    except Exception:  # the client hung up or timed out: nothing left to drain
        return


def _steady_pieces(pieces: Iterable[bytes], minimum: int = 256) -> Iterator[bytes]:
    """The same bytes, re-cut into pieces of at least ``minimum`` bytes (but
    the last) that never end with a lone CR.

    werkzeug's decoder can emit a stray CR at the end of a part when the
    CR LF before the boundary is split across tiny pieces; pieces that are
    not tiny and hold back a trailing CR avoid it. Request bodies are read
    in 64 KiB pieces anyway, so this costs nothing in practice.
    """
    pending = b""
    for piece in pieces:
        pending += piece
        if len(pending) < minimum:
            continue
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        yield pending[:cut]
        pending = pending[cut:]
    if pending:
        yield pending
