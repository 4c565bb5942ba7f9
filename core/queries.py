"""The SQL statements of the service, loaded once from ``sql/queries/*.sql``.

Each statement sits in a ``.sql`` file under a ``-- name: <table>_<verb>``
header followed by a one-line ``--`` purpose, so it can be read, run and
EXPLAINed in psql as it is. Names start with the table they mainly touch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_NAME_RE = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The ``sql/`` folder beside the packages."""
    return Path(__file__).resolve().parent.parent / "sql"


@dataclass(frozen=True)
class Query:
    name: str
    purpose: str
    text: str


def parse_queries(source: str) -> dict[str, Query]:
    """Split one ``.sql`` file into its named statements."""
    queries: dict[str, Query] = {}
    headers = list(_NAME_RE.finditer(source))
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(source)
        body_lines = source[match.end() : end].strip().splitlines()
        if not body_lines or not body_lines[0].startswith("--"):
            raise ValueError(f"query {match.group(1)} has no one-line purpose comment")
        purpose = body_lines[0].lstrip("-").strip()
        text = "\n".join(body_lines[1:]).strip().rstrip(";")
        if not text:
            raise ValueError(f"query {match.group(1)} is empty")
        queries[match.group(1)] = Query(match.group(1), purpose, text)
    return queries


@cache
def all_queries() -> dict[str, Query]:
    """Every named query of every file under ``sql/queries``, parsed once."""
    queries: dict[str, Query] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        for name, query in parse_queries(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name} is defined twice ({path.name})")
            queries[name] = query
    return queries


def q(name: str) -> str:
    """The text of the named query, ready for ``cursor.execute``."""
    return all_queries()[name].text
