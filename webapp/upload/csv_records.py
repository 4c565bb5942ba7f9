"""One record of an uploaded CSV: which columns the header names (the text, the id, the columns kept
with each row), and a record checked into a row to score or a row set aside with its reason (the
rules: docs/api.md, "What counts as a bad file" and "Kept columns")."""

from __future__ import annotations

from core.batches.ingest import StagedRow as CsvRow
from webapp.problems import Problem
from webapp.upload.request_body import bad_request


def checked_row(
    line: int,
    record: list[str],
    width: int,
    id_index: int | None,
    text_index: int,
    max_text_chars: int,
    max_id_chars: int,
    kept: tuple[int, ...] = (),
) -> CsvRow:
    """Validate one record: a CsvRow, with ``problem`` set if it must be set aside; a row to score
    carries the values of the ``kept`` columns (None when none are)."""
    if id_index is None:
        client_id = str(line)
    elif id_index < len(record):
        client_id = record[id_index]
    else:
        client_id = ""
    if len(record) != width:
        return set_aside(
            line,
            client_id,
            "wrong_field_count",
            f"expected {width} fields as in the header, found {len(record)}",
        )
    text = record[text_index]
    values = tuple(record[index] for index in kept) if kept else None
    if "\x00" in text or "\x00" in client_id or (values and any("\x00" in value for value in values)):
        return set_aside(line, client_id, "nul_character", "the row contains a NUL character")
    if len(client_id) > max_id_chars:
        detail = f"the id has {len(client_id):,} characters; the limit is {max_id_chars:,}"
        return set_aside(line, client_id, "id_too_long", detail)
    if not text.strip():
        return set_aside(line, client_id, "empty_text", "the text is empty")
    if len(text) > max_text_chars:
        return set_aside(
            line,
            client_id,
            "text_too_long",
            f"the text has {len(text):,} characters; the limit is {max_text_chars:,}",
        )
    return CsvRow(line, client_id, text, fields=values)


#: A set-aside row keeps this much of its id, for people to find the row (an id past
#: MAX_ID_CHARS is itself a reason to set a row aside).
KEPT_ID_CHARS = 1_000


def set_aside(line: int, client_id: str, reason: str, detail: str) -> CsvRow:
    """The row of ``line``, set aside for ``reason``, keeping the first KEPT_ID_CHARS of its id."""
    # PostgreSQL text cannot hold NUL; the id is kept for people, so show it.
    kept = client_id[:KEPT_ID_CHARS].replace("\x00", "\N{SYMBOL FOR NULL}")
    return CsvRow(line, kept, "", reason, detail)


#: How many of the file's columns a refusal about a missing column lists.
COLUMNS_LISTED = 50


def header_columns(
    header: list[str], text_column: str | None = None, id_column: str | None = None
) -> tuple[int | None, int]:
    """The id column's index (None: the line number is the id) and the text column's. The columns are
    ``text_column`` and ``id_column`` when given, else 'text' and 'id'; names compare trimmed and
    case-insensitively. A named column the header lacks is a 400 listing the header's columns."""
    names = [name.strip().lower() for name in header]
    for index, name in enumerate(names):
        if name and name in names[:index]:
            raise bad_request("duplicate-column", f"Line 1: the column {name!r} appears more than once.")
    if text_column is not None:
        text_index = _named(header, names, text_column, "text_column")
    elif "text" in names:
        text_index = names.index("text")
    else:
        found = ", ".join(repr(h) for h in header[:10])
        hint = (
            "If the file has no header row, add one such as 'id,text', or name the text's column "
            "with text_column."
        )
        if header and header[0].lstrip().startswith("{"):
            hint = (
                "It looks like JSON Lines, which is read as such when named *.jsonl or sent as "
                "application/x-ndjson."
            )
        raise bad_request(
            "missing-text-column", f"Line 1: the header must name a 'text' column (found {found}). {hint}"
        )
    if id_column is not None:
        id_index = _named(header, names, id_column, "id_column")
    else:
        id_index = names.index("id") if "id" in names else None
    return id_index, text_index


#: At most this many columns are kept besides the text and the id, each value at most this long,
#: each name at most this long.
MAX_KEPT_COLUMNS = 50
MAX_KEPT_CHARS = 2_000
MAX_KEPT_NAME_CHARS = 255


def kept_columns(header: list[str], id_index: int | None, text_index: int) -> tuple[int, ...]:
    """The columns kept with each row: every other column with a name, in file order. More than
    MAX_KEPT_COLUMNS of them, or a name too long or holding a NUL, is a 400."""
    kept = tuple(
        index for index, name in enumerate(header) if index not in (id_index, text_index) and name.strip()
    )
    if len(kept) > MAX_KEPT_COLUMNS:
        raise too_many_kept(1, len(kept))
    for index in kept:
        name = header[index]
        if len(name) > MAX_KEPT_NAME_CHARS or "\x00" in name:
            raise bad_request(
                "invalid-column-name",
                f"Line 1: column {index + 1}'s name must be at most {MAX_KEPT_NAME_CHARS} characters "
                "without a NUL.",
            )
    return kept


def too_many_kept(line: int, count: int, what: str = "columns") -> Problem:
    """The 400 for a file with ``count`` kept columns, more than MAX_KEPT_COLUMNS."""
    return bad_request(
        "too-many-columns",
        f"Line {line}: the file has {count:,} {what} besides the text and the id; at most "
        f"{MAX_KEPT_COLUMNS} are kept with the rows.",
    )


def kept_too_long(line: int, name: str, chars: int) -> Problem:
    return bad_request(
        "kept-column-too-long",
        f"Line {line}: the column {name!r} has {chars:,} characters; the limit for a column kept "
        f"with the rows is {MAX_KEPT_CHARS:,}.",
    )


def _named(header: list[str], names: list[str], column: str, option: str) -> int:
    wanted = column.strip().lower()
    if wanted in names:
        return names.index(wanted)
    raise bad_request(
        "missing-column",
        f"Line 1: the file has no column {column!r} ({option}); its columns are {listed(header)}.",
    )


def listed(columns: list[str]) -> str:
    """The first COLUMNS_LISTED of ``columns``, quoted, for a refusal that names them."""
    text = ", ".join(repr(name) for name in columns[:COLUMNS_LISTED])
    if len(columns) > COLUMNS_LISTED:
        text += f" and {len(columns) - COLUMNS_LISTED:,} more"
    return text or "none"
