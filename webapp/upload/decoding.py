"""The encodings an upload may be in, and decoding its bytes as they arrive.

Only encodings whose incremental decoder holds a bounded state between pieces are accepted:
UTF-8, UTF-16 and UTF-32, the single-byte code pages (cp1252, latin-1, koi8-r, mac-roman, ...)
and the CJK multibyte codecs (shift_jis, gb18030, big5, ...: CPython's keep at most 8 pending
bytes). Others are a 400 naming the accepted ones: ``utf-7`` and ``idna`` buffer until a character
or label ends, which a hostile body can postpone to its last byte (the whole body held, and
re-scanned per piece); ``punycode``, ``unicode-escape`` and the like are not file encodings.
An undecodable byte is a 400 naming its line and its byte position in the file.
"""

from __future__ import annotations

import _multibytecodec
import codecs
import encodings
import encodings.aliases
import logging
import pkgutil
import sys
from collections.abc import Iterable, Iterator
from functools import cache

from webapp.problems import Problem
from webapp.upload.request_body import bad_request

log = logging.getLogger(__name__)

#: Unicode encodings, and the two whose C decoders keep no state at all.
_UNICODE_AND_SIMPLE = frozenset(
    {
        "utf-8",
        "utf-8-sig",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
        "ascii",
        "iso8859-1",
    }
)


def _bounded(info: codecs.CodecInfo) -> bool:
    """Whether the codec decodes text with a bounded incremental state."""
    if not getattr(info, "_is_text_encoding", True):
        return False
    if info.name in _UNICODE_AND_SIMPLE:
        return True
    decoder = info.incrementaldecoder
    if isinstance(decoder, type) and issubclass(decoder, _multibytecodec.MultibyteIncrementalDecoder):
        return True
    # Single-byte code pages decode through a 256-entry table, byte by byte.
    return hasattr(sys.modules.get(getattr(decoder, "__module__", ""), None), "decoding_table")


@cache
def accepted_encodings() -> tuple[str, ...]:
    """Canonical names of every encoding an upload may name, sorted."""
    names = {module.name for module in pkgutil.iter_modules(encodings.__path__)}
    names |= set(encodings.aliases.aliases.values())
    accepted = set()
    for name in names:
        try:
            info = codecs.lookup(name)
        except LookupError:
            continue
        if _bounded(info):
            accepted.add(info.name)
    return tuple(sorted(accepted))


def check_encoding(name: str) -> str:
    """An accepted encoding, by its canonical name; 400 otherwise."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise bad_request(
            "unknown-encoding", f"{name!r} is not a text encoding we know (try utf-8 or cp1252)."
        )
    if info.name not in accepted_encodings():
        accepted = accepted_encodings()
        raise Problem(
            400,
            "Invalid upload",
            f"The encoding {info.name!r} is not accepted: its decoder can hold back an unbounded part of "
            f"the file. Accepted: {', '.join(accepted)}.",
            "unsupported-encoding",
            accepted_encodings=list(accepted),
        )
    return info.name


def decoded(pieces: Iterable[bytes], encoding: str) -> Iterator[str]:
    """Decode incrementally; an undecodable byte is a 400 naming its line and position.

    A UTF-8 file may start with a BOM, which is not text. It is dropped here rather than by
    the utf-8-sig codec, whose error positions in a first piece that starts with a BOM are
    3 bytes early (it decodes the rest of that piece on its own)."""
    bom = encoding in ("utf-8", "utf-8-sig")
    decoder = codecs.getincrementaldecoder("utf-8" if bom else encoding)(errors="strict")
    consumed = newlines = 0  # bytes and LFs in the pieces already decoded
    for piece in pieces:
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(piece)
        except UnicodeError as exc:
            raise _undecodable(
                exc, pending + piece, consumed - len(pending), newlines - pending.count(b"\n"), encoding
            ) from exc
        consumed += len(piece)
        newlines += piece.count(b"\n")
        if text and bom:
            text, bom = text.removeprefix("\ufeff"), False
        if text:
            yield text
    pending = decoder.getstate()[0]
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeError as exc:
        raise _undecodable(
            exc, pending, consumed - len(pending), newlines - pending.count(b"\n"), encoding
        ) from exc
    if tail and bom:
        tail = tail.removeprefix("\ufeff")
    if tail:
        yield tail


def _undecodable(
    exc: UnicodeError, data: bytes, data_offset: int, newlines_before: int, encoding: str
) -> Problem:
    # A UnicodeError that is not a UnicodeDecodeError (a CJK decoder's "pending buffer
    # overflow") has no position: it is reported at the start of the piece.
    start = exc.start if isinstance(exc, UnicodeDecodeError) else 0
    line = newlines_before + data[:start].count(b"\n") + 1
    return undecodable(line, data_offset + start, data[start : start + 1].hex(), encoding)


def undecodable(line: int, position: int, bad: str, encoding: str) -> Problem:
    """The 400 for the byte ``bad`` (hex) at ``position``, on ``line``, that ``encoding`` cannot decode."""
    hint = " If it comes from Excel, try ?encoding=cp1252." if encoding == "utf-8" else ""
    where = f"at byte {position} of the file, counting from 0 (byte 0x{bad})"
    return bad_request(
        "not-utf8" if encoding == "utf-8" else "undecodable",
        f"Line {line}: the file is not valid {encoding.upper()} {where}.{hint}",
    )
