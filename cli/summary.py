"""``sentiment summary ID --by COLUMN [--limit N]``: a finished batch's results per value of one
kept column, printed as a table (largest groups first, then the rest folded into one line)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from cli.service import Service

#: The table's columns after the value: the answer's members, and their headings.
COUNTS = (
    ("count", "count"),
    ("positive", "positive"),
    ("negative", "negative"),
    ("neutral", "neutral"),
    ("failed", "failed"),
    ("mean_compound", "mean_compound"),
)
#: A value wider than this is cut, with an ellipsis, so the numbers stay in line.
VALUE_WIDTH = 40


def add_parser(commands: Any) -> None:
    summary = commands.add_parser("summary", help="a finished batch's results per value of a kept column")
    summary.add_argument("batch_id")
    summary.add_argument("--by", required=True, metavar="COLUMN", help="one of the batch's kept columns")
    summary.add_argument(
        "--limit", type=int, default=50, help="groups listed, 1 to 1000 (default 50); the rest in one line"
    )


def summary(service: Service, args: argparse.Namespace) -> int:
    """Print the table; 0. A bad column, a bad limit or a batch still processing is the service's
    problem, printed as any other (exit 1)."""
    path = f"/batch/{quote(args.batch_id, safe='')}/summary"
    answer = service.json("GET", path, query={"by": args.by, "limit": args.limit})
    print(table(answer), end="")
    return 0


def _value(value: str) -> str:
    flat = " ".join(value.split()) or '""'
    return flat if len(flat) <= VALUE_WIDTH else flat[: VALUE_WIDTH - 1] + "…"


def _number(group: dict[str, Any], name: str) -> str:
    value = group[name]
    if value is None:
        return "—"
    return f"{value:+.4f}" if name == "mean_compound" else f"{value:,}"


def table(answer: dict[str, Any]) -> str:
    """The groups as aligned text: a header, one line per group, and ``(other: N values)``."""
    rows = [[answer["by"], *(heading for _, heading in COUNTS)]]
    rows += [[_value(g["value"]), *(_number(g, name) for name, _ in COUNTS)] for g in answer["groups"]]
    other = answer["other"]
    if other["groups"]:
        label = f"(other: {other['groups']:,} value{'' if other['groups'] == 1 else 's'})"
        rows.append([label, *(_number(other, name) for name, _ in COUNTS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))]
        )
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
