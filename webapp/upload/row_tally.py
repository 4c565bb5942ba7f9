"""The count every upload reader keeps of its rows, and the refusals it leads to.

CSV (:mod:`webapp.upload.csv_reader`), JSON Lines (:mod:`webapp.upload.json_lines`) and workbook
(:mod:`webapp.upload.workbook`) uploads count their data rows the same way: past ``max_rows`` the
file is a 413 ``too-many-rows``; a row set aside in a strict upload is a 400 ``invalid-row``; the
first :data:`PROBLEMS_LISTED` problems are kept for the 400 ``no-valid-rows`` of a file none of
whose rows can be scored (:func:`check_counts`, with ``no-data-rows`` for a header alone).
"""

from __future__ import annotations

from collections.abc import Sequence

from webapp.problems import Problem
from webapp.upload.request_body import bad_request

#: How many problems a 400 for "every row is invalid" lists.
PROBLEMS_LISTED = 5

#: A row type's ``(...)`` goes through a Python-level __new__; this builds the same tuple in C.
new_row = tuple.__new__


class RowTally:
    """The rows of one upload counted as they are read: :meth:`count` each data row before it is
    checked, :meth:`checked` each row once it is, :meth:`finish` once the file is read."""

    __slots__ = ("max_rows", "problems", "rows", "strict", "valid")

    def __init__(self, max_rows: int, strict: bool) -> None:
        self.max_rows, self.strict = max_rows, strict
        self.rows = self.valid = 0
        self.problems: list[str] = []

    def count(self) -> None:
        """One more data row: a 413 past ``max_rows``."""
        self.rows += 1
        if self.rows > self.max_rows:
            raise too_many_rows(self.max_rows)

    def checked(self, where: str, line: int, problem: str | None, detail: str | None) -> None:
        """The row at ``line`` (called a ``where`` in a listed problem) was checked: counted valid,
        or its problem kept (a 400 at once in a strict upload)."""
        if problem is None:
            self.valid += 1
            return
        if self.strict:
            raise strict_refusal(line, detail or problem)
        if len(self.problems) < PROBLEMS_LISTED:
            self.problems.append(f"{where} {line}: {detail}")

    def finish(self) -> None:
        """The file has been read: refuse it if it holds no row to score."""
        check_counts(self.rows, self.valid, self.problems)


def check_counts(rows: int, valid: int, problems: Sequence[str]) -> None:
    """The file has been read: refuse it if it holds no row to score."""
    if rows == 0:
        raise bad_request("no-data-rows", "The file has a header but no data rows.")
    if valid == 0:
        raise bad_request(
            "no-valid-rows",
            f"None of the {rows:,} data rows can be scored; the first problems: " + "; ".join(problems) + ".",
        )


def strict_refusal(line: int, detail: str) -> Problem:
    return bad_request("invalid-row", f"Line {line}: {detail} (strict mode rejects the file).")


def too_many_rows(max_rows: int) -> Problem:
    return bad_request(
        "too-many-rows", f"The file has more than {max_rows:,} data rows (MAX_ROWS).", 413, "Upload too large"
    )
