"""The ``sentiment`` command: ``upload``, ``follow``, ``status``, ``results``, ``list``; its exit codes.

Exit codes: 0 the batch completed (or the command did what it was asked);
2 it completed with errors (some rows failed); 3 it was cancelled; 1 a usage
error or an HTTP error (argparse's own usage errors included: they would be 2,
which here means something else); 128 + the signal when ``--follow`` or
``follow`` is interrupted (Ctrl-C: 130). What a script wants goes to stdout:
the batch id of an upload, a batch as JSON, the results CSV, the rows as they
are scored, the list; messages and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from cli.follow import Interrupted, done, follow
from cli.progress import Bar
from cli.service import Service, ServiceError
from cli.transfer import Inflated, copy_results, upload_form

EXIT_OK, EXIT_ERROR, EXIT_WITH_ERRORS, EXIT_CANCELLED = 0, 1, 2, 3
STATUS_EXIT = {"processing": EXIT_OK, "completed": EXIT_OK, "completed_with_errors": EXIT_WITH_ERRORS}
STATUS_EXIT["cancelled"] = EXIT_CANCELLED
SENTIMENTS = ("positive", "negative", "neutral")
STATUSES = ("processing", "completed", "completed_with_errors", "cancelled")
#: How often ``--wait`` asks for the batch's progress.
POLL_SECONDS = 1.0
LIST_COLUMNS = ("batch_id", "status", "total_count", "progress_percent", "created_at", "filename")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (2 means "completed with errors" here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def parser() -> Parser:
    top = Parser(
        prog="sentiment",
        description="Client of the batch sentiment service: SENTIMENT_URL (default http://127.0.0.1:8000), "
        "SENTIMENT_KEY (an API key, sent as a bearer token).",
        epilog="Exit codes: 0 completed, 2 completed_with_errors, 3 cancelled, 1 usage or HTTP error.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    upload = commands.add_parser(
        "upload", help="upload a CSV, JSON Lines or .xlsx file (or .csv.gz, .jsonl.gz); prints the batch id"
    )
    upload.add_argument(
        "file",
        type=Path,
        help="the file (id and text columns): .csv, .jsonl or .ndjson (one JSON object per line), or "
        ".xlsx; plain or gzip-compressed",
    )
    upload.add_argument("--wait", action="store_true", help="wait until the batch finishes")
    upload.add_argument("--out", type=Path, help="then write its results.csv here (implies --wait)")
    upload.add_argument(
        "--follow", action="store_true", help="print its rows as CSV as they are scored (the id on stderr)"
    )
    upload.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)"
    )
    upload.add_argument("--callback-url", metavar="URL", help="called when the batch finishes")
    following = commands.add_parser("follow", help="print a batch's rows as CSV as they are scored")
    following.add_argument("batch_id")
    following.add_argument(
        "--after", default="", metavar="EVENT_ID", help="resume after this event (no header then)"
    )
    status = commands.add_parser("status", help="a batch as JSON; exit code by its status")
    status.add_argument("batch_id")
    results = commands.add_parser("results", help="a finished batch's results as CSV")
    results.add_argument("batch_id")
    results.add_argument("--sentiment", choices=SENTIMENTS, help="only the rows of this sentiment")
    results.add_argument("--out", type=Path, help="write to this file instead of stdout")
    listing = commands.add_parser("list", help="your batches, newest first (tab-separated)")
    listing.add_argument("--status", choices=STATUSES, help="only batches in this status")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    return top


def main(argv: list[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    try:
        service = Service()
        return COMMANDS[args.command](service, args, command)
    except ServiceError as exc:
        print(f"sentiment: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file that cannot be read or written, a download cut short
        print(f"sentiment: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as exc:
        return exc.code
    except KeyboardInterrupt:
        return 130


def _metadata(pairs: list[str], command: Parser) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            command.error(f"--metadata takes KEY=VALUE, not {pair!r}")
        labels[key] = value
    return labels


def upload(service: Service, args: argparse.Namespace, command: Parser) -> int:
    path: Path = args.file
    if not path.is_file():
        command.error(f"no such file: {path}")
    if args.follow and args.out:
        command.error("--follow prints the rows to stdout: redirect it instead of --out")
    fields = {}
    if args.metadata:
        fields["metadata"] = json.dumps(_metadata(args.metadata, command), ensure_ascii=False)
    if args.callback_url:
        fields["callback_url"] = args.callback_url
    # One key for this upload and every retry of it: the service answers a retry with the first batch.
    key = str(uuid.uuid4())
    with Bar(path.stat().st_size, path.name, bytes_=True) as bar:
        form = upload_form(path, fields, bar.update)
        headers = {
            "Content-Type": form.content_type,
            "Content-Length": str(form.length),
            "Idempotency-Key": key,
        }
        answer = service.request("POST", "/batch/upload", body=form.body, headers=headers, on_retry=bar.reset)
        with answer:
            batch = json.loads(answer.read())
            replayed = answer.headers.get("Idempotent-Replayed") == "true"
    # With --follow stdout is the rows' CSV: the id goes to stderr.
    print(batch["batch_id"], file=sys.stderr if args.follow else sys.stdout, flush=True)
    if replayed:
        print(f"sentiment: {batch['batch_id']} was made by an earlier try of this upload", file=sys.stderr)
    if args.follow:
        return _followed(service, batch["batch_id"], "")
    if not (args.wait or args.out):
        return EXIT_OK
    batch = wait(service, batch)
    _report(batch)
    if args.out is not None:
        if batch["status"] in ("completed", "completed_with_errors"):
            _download(service, batch["batch_id"], args.out, None)
        else:
            print(f"sentiment: {batch['status']}: no results to write to {args.out}", file=sys.stderr)
    return STATUS_EXIT[batch["status"]]


def wait(service: Service, batch: dict[str, Any]) -> dict[str, Any]:
    """The batch once it is no longer processing, polled every POLL_SECONDS."""
    path = f"/batch/{quote(batch['batch_id'], safe='')}"
    with Bar(batch["total_count"], "rows scored", unit="row") as bar:
        while True:
            bar.set(done(batch), batch["total_count"])
            if batch["status"] != "processing":
                return batch
            time.sleep(POLL_SECONDS)
            batch = service.json("GET", path)


def _report(batch: dict[str, Any]) -> None:
    summary = batch.get("summary") or {}
    counts = ", ".join(f"{summary[name]:,} {name}" for name in SENTIMENTS if name in summary)
    failed = f", {batch['failed_count']:,} failed" if batch["failed_count"] else ""
    invalid = f", {batch['invalid_count']:,} set aside" if batch["invalid_count"] else ""
    print(
        f"sentiment: {batch['batch_id']} {batch['status']}: {batch['total_count']:,} rows"
        + (f" ({counts})" if counts else "")
        + failed
        + invalid,
        file=sys.stderr,
    )


def following(service: Service, args: argparse.Namespace, command: Parser) -> int:
    return _followed(service, args.batch_id, args.after)


def _followed(service: Service, batch_id: str, after: str) -> int:
    """Follow the batch to its end (the rows after event ``after``, with the header only when
    from the start), then report it; the exit code of its final status."""
    batch = follow(service, batch_id, after, header=not after)
    _report(batch)
    return STATUS_EXIT.get(batch["status"], EXIT_OK)


def status(service: Service, args: argparse.Namespace, command: Parser) -> int:
    batch = service.json("GET", f"/batch/{quote(args.batch_id, safe='')}")
    print(json.dumps(batch, indent=2, ensure_ascii=False))
    return STATUS_EXIT.get(batch["status"], EXIT_OK)


def results(service: Service, args: argparse.Namespace, command: Parser) -> int:
    _download(service, args.batch_id, args.out, args.sentiment)
    return EXIT_OK


def _download(service: Service, batch_id: str, out: Path | None, sentiment: str | None) -> None:
    """results.csv, gzip-compressed on the wire, to ``out`` (whole or not at all) or stdout."""
    path = f"/batch/{quote(batch_id, safe='')}/results.csv"
    with service.request("GET", path, headers={"Accept-Encoding": "gzip"}) as answer:
        source = Inflated(answer, answer.headers.get("Content-Encoding", "").lower() == "gzip")
        if out is None:
            copy_results(source, sys.stdout.buffer, sentiment)
            sys.stdout.buffer.flush()
            return
        partial = out.with_name(out.name + ".part")
        try:
            with partial.open("wb") as file:
                kept = copy_results(source, file, sentiment)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    rows = f"{kept:,} {sentiment} rows" if kept is not None else "results"
    print(f"sentiment: {rows} of {batch_id} written to {out}", file=sys.stderr)


def listing(service: Service, args: argparse.Namespace, command: Parser) -> int:
    if args.limit < 1:
        command.error("--limit must be at least 1")
    query: dict[str, Any] = {"per_page": min(args.limit, 1000)}
    if args.status:
        query["status"] = args.status
    print("\t".join(LIST_COLUMNS))
    shown = 0
    while True:
        page = service.json("GET", "/batches", query=query)
        for batch in page["batches"]:
            print("\t".join(_cell(batch.get(column)) for column in LIST_COLUMNS))
            shown += 1
            if shown >= args.limit:
                return EXIT_OK
        if not page.get("next_cursor"):
            return EXIT_OK
        query["after"] = page["next_cursor"]


def _cell(value: Any) -> str:
    """A value as one tab-separated cell (a file name may hold tabs or line ends)."""
    return "" if value is None else " ".join(str(value).split())


COMMANDS = {"upload": upload, "follow": following, "status": status, "results": results, "list": listing}
