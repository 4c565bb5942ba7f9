"""The zip archive of an uploaded ``.xlsx``: spooled to disk and checked before openpyxl opens it.

A zip archive is read from its end (the central directory), so the file is spooled to an anonymous
temporary file first (in ``TMPDIR``, else ``/tmp``; unlinked from the start, so the kernel frees it
when it is closed, whatever happens). The bytes reaching here are already capped by
MAX_UPLOAD_BYTES (:mod:`webapp.upload.request_body`, :mod:`webapp.upload.compression`); the spool
counts them again, so no path can make it grow past that. A spool that finds its disk full is a
507 ``storage-full`` (:func:`webapp.problems.storage_full`), nothing stored. Then the archive's
directory is checked: at most :data:`MAX_ENTRIES` entries, their declared inflated sizes summed at
most MAX_UPLOAD_BYTES (413, as for gzip), and each part openpyxl reads whole under a cap of its
own (:func:`part_cap`, 413). zipfile never inflates an entry past its declared size (a lying entry
fails its CRC check instead), so these sums bound what reading inflates.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from typing import IO
from xml.etree import ElementTree

from core.disk_full import is_disk_full
from webapp.problems import Problem, storage_full
from webapp.upload.request_body import bad_request, too_large

#: How many entries the archive may hold (a workbook has a dozen or so, plus a few per sheet).
MAX_ENTRIES = 1_000
#: How many bytes a part openpyxl reads whole into a tree (styles, the workbook, relationships,
#: properties...) may inflate to. Real ones are kilobytes; each byte of XML costs ~70 in the tree
#: (2 MiB of empty styles measured 150 MB of memory), so this caps a worker at that.
MAX_PART_BYTES = 2 * 1024 * 1024
#: How many bytes the shared strings table, held whole as a list of strings, may inflate to.
MAX_SHARED_STRINGS_BYTES = 256 * 1024 * 1024
_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_SHARED_STRINGS = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


def spool_pieces(pieces: Iterable[bytes], spool: IO[bytes], max_bytes: int) -> None:
    """Write the upload to the spool: at most ``max_bytes`` (413 past them), 507 on a full disk."""
    written = 0
    try:
        for piece in pieces:
            written += len(piece)
            if written > max_bytes:
                raise too_large(max_bytes)
            spool.write(piece)
        spool.flush()  # a buffered write's ENOSPC surfaces here, not when the file is closed
    except OSError as exc:
        if is_disk_full(exc):
            raise storage_full(exc) from exc
        raise


def check_archive(spool: IO[bytes], max_bytes: int) -> None:
    """Refuse an archive that is not a zip, holds more than MAX_ENTRIES entries, whose entries
    declare more than ``max_bytes`` inflated, or one of whose parts declares more than its own cap
    (:func:`part_cap`), before anything in it is inflated (413 past a size, 400 otherwise)."""
    try:
        with zipfile.ZipFile(spool) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ENTRIES:
                raise invalid_workbook(
                    f"its zip archive holds {len(entries):,} entries; the limit is {MAX_ENTRIES:,}"
                )
            inflated = sum(entry.file_size for entry in entries)
            if inflated > max_bytes:
                raise _too_large(
                    f"The workbook's zip archive inflates to {inflated:,} bytes, more than the limit of "
                    f"{max_bytes:,} bytes (MAX_UPLOAD_BYTES applies to the decompressed data too)"
                )
            types = _declared_types(archive, entries)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, SyntaxError) as exc:
        raise invalid_workbook(f"it is not a readable zip archive ({exc})") from exc
    for entry in entries:
        cap = part_cap(entry.filename, types.get(entry.filename, set()))
        if cap is not None and entry.file_size > cap:
            raise _too_large(
                f"The workbook's part {entry.filename[:200]!r} inflates to {entry.file_size:,} bytes, "
                f"more than the {cap:,} bytes such a part may have"
            )


def part_cap(name: str, types: set[str]) -> int | None:
    """How many bytes the entry ``name`` may inflate to, given the content types
    ``[Content_Types].xml`` declares for it; None for no cap but the archive's.

    openpyxl streams a worksheet row by row, but reads every other XML part whole into a tree
    (styles, the workbook, relationships, properties, chartsheets...), where a few bytes of XML
    become hundreds of bytes of objects: those are capped at :data:`MAX_PART_BYTES`. The shared
    strings become one list, capped at :data:`MAX_SHARED_STRINGS_BYTES`. Media files in ``xl/media/``
    are never read. The kind of a part is what the content types say of it, not its name."""
    if types == {_WORKSHEET}:
        return None
    if types == {_SHARED_STRINGS}:
        return MAX_SHARED_STRINGS_BYTES
    if not types and name.startswith("xl/media/"):
        return None
    return MAX_PART_BYTES


def _declared_types(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo]) -> dict[str, set[str]]:
    """Each part named by an Override of ``[Content_Types].xml``: the content types it declares.
    Read as a stream (the file is itself under MAX_PART_BYTES), each element dropped once read."""
    manifest = next((entry for entry in entries if entry.filename == "[Content_Types].xml"), None)
    if manifest is None or manifest.file_size > MAX_PART_BYTES:
        return {}  # no types: every part is capped; a missing manifest fails in openpyxl
    types: dict[str, set[str]] = {}
    with archive.open(manifest) as source:
        for _, element in ElementTree.iterparse(source):
            if element.tag.rpartition("}")[2] == "Override":
                part = element.get("PartName", "").lstrip("/")
                types.setdefault(part, set()).add(element.get("ContentType", ""))
            element.clear()
    return types


def _too_large(what: str) -> Problem:
    return Problem(
        413,
        "Upload too large",
        f"{what}; refused before inflating anything, nothing was stored.",
        "upload-too-large",
    )


def invalid_workbook(reason: str) -> Problem:
    return bad_request(
        "invalid-xlsx", f"The file is not a valid .xlsx workbook: {reason}; nothing was stored."
    )
