"""What a batch is, as code: its statuses, the typed ``Batch`` row, its progress and its JSON.
Its rows (a result, a set-aside row) are :mod:`core.batches.rows`.

``Batch`` mirrors the ``batches`` table column for column (queries select
``b.*`` and read it with psycopg's ``class_row``), so a new column needs a
field here and, to be shown, a :class:`~core.jsonshape.Member` in
:data:`BATCH_MEMBERS`; the API, the pages, ``/batches`` and the OpenAPI
document all take it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.batches.rows import ROW_SCHEMAS, SENTIMENTS
from core.batches.summaries import SCORE_MEMBERS, ScoreSummary
from core.jsonshape import COUNT, NULLABLE_TIME, TIME, Member, dump, iso, object_schema
from core.webhook_guard import shown_url

#: Every status a batch can have; the schema's CHECK constraint lists the same (a test compares them).
STATUSES = ("processing", "completed", "completed_with_errors", "cancelled")
#: Statuses a batch never leaves.
FINAL_STATUSES = ("completed", "completed_with_errors", "cancelled")
#: Statuses whose batch has results to read and download.
WITH_RESULTS = ("completed", "completed_with_errors")

# Below this much elapsed time a rate is noise, not information.
_MIN_ELAPSED_SECONDS = 0.5


@dataclass(frozen=True)
class Progress:
    """A batch's progress as people read it: rows done, percent, rows per second, time left.

    Rows set aside at upload and rows whose scoring failed count as done, so
    the bar reaches 100 % exactly when the batch completes. The rate is the
    batch's average since a runner first claimed one of its chunks.
    """

    total: int
    done: int
    scored: int  # by runners: processed plus failed
    percent: float
    rows_per_second: float | None
    seconds_left: float | None


@dataclass(frozen=True)
class Batch:
    """One row of ``batches``."""

    id: int
    public_id: str
    status: str
    total_count: int
    processed_count: int
    positive_count: int
    negative_count: int
    neutral_count: int
    chunk_size: int
    source_filename: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    invalid_count: int
    failed_count: int
    deleted_at: datetime | None  # set: being removed in the background, invisible to clients
    client: str | None  # the API key (its name) that uploaded and owns it; None without a key
    metadata: dict[str, str]  # the client's labels (core.batches.labels)
    expires_after: timedelta | None  # kept this long once finished; None: until deleted
    callback_url: str | None  # called once the batch reaches a final state (core/webhooks.py)
    commit_seq: int  # finishes committed so far: the last entry of batch_commits (core.batches.feed)
    field_names: list[str]  # the file's columns kept with each row, in file order

    @property
    def expires_at(self) -> datetime | None:
        """When purging removes the batch: expires_after past its finish (None while processing)."""
        if self.completed_at is None or self.expires_after is None:
            return None
        return self.completed_at + self.expires_after

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def has_results(self) -> bool:
        return self.status in WITH_RESULTS

    def sentiment_count(self, sentiment: str) -> int:
        return {"positive": self.positive_count, "negative": self.negative_count}.get(
            sentiment, self.neutral_count
        )

    def summary(self, scores: ScoreSummary | None = None) -> dict[str, Any] | None:
        """Rows per sentiment, once the batch has stopped processing; with ``scores``
        (:func:`core.batches.summaries.read`), their mean and histogram too."""
        if self.status == "processing":
            return None
        counts: dict[str, Any] = {s: self.sentiment_count(s) for s in SENTIMENTS}
        return counts | scores.to_json() if scores else counts

    def progress(self, now: datetime | None = None) -> Progress:
        scored = self.processed_count + self.failed_count
        done = scored + self.invalid_count
        percent = round(100.0 * done / self.total_count, 1) if self.total_count else 100.0
        rate = None
        if self.started_at is not None:
            until = self.completed_at or now or datetime.now(UTC)
            elapsed = (until - self.started_at).total_seconds()
            if elapsed >= _MIN_ELAPSED_SECONDS and scored:
                rate = scored / elapsed
        seconds_left = (self.total_count - done) / rate if self.status == "processing" and rate else None
        return Progress(self.total_count, done, scored, percent, rate, seconds_left)

    def to_json(self, scores: ScoreSummary | None = None) -> dict[str, Any]:
        """The batch as every JSON answer shows it; the batch's own status passes its ``scores``."""
        body = dump(self, BATCH_MEMBERS)
        if scores and "summary" in body:
            body["summary"] = self.summary(scores)
        return body


BATCH_MEMBERS = (
    Member("batch_id", lambda b: b.public_id, {"type": "string", "pattern": "^batch-[0-9a-f]{32}$"}),
    Member("status", lambda b: b.status, {"enum": list(STATUSES)}),
    Member("total_count", lambda b: b.total_count, COUNT),
    Member("processed_count", lambda b: b.processed_count, COUNT),
    Member("invalid_count", lambda b: b.invalid_count, COUNT),
    Member("failed_count", lambda b: b.failed_count, COUNT),
    Member(
        "progress_percent", lambda b: b.progress().percent, {"type": "number", "minimum": 0, "maximum": 100}
    ),
    Member("created_at", lambda b: iso(b.created_at), TIME),
    Member("started_at", lambda b: iso(b.started_at), NULLABLE_TIME),
    Member("completed_at", lambda b: iso(b.completed_at), NULLABLE_TIME),
    Member(
        "filename",
        lambda b: b.source_filename,
        {"type": ["string", "null"], "description": "The uploaded file's name, if it had one."},
    ),
    Member(
        "client",
        lambda b: b.client,
        {
            "type": ["string", "null"],
            "description": "The API key (its name) that uploaded and owns the batch.",
        },
    ),
    Member(
        "metadata",
        lambda b: b.metadata,
        {
            "type": "object",
            "description": "The labels given at upload: up to 16 string pairs.",
            "additionalProperties": {"type": "string", "maxLength": 512},
            "maxProperties": 16,
        },
    ),
    Member(
        "expires_at",
        lambda b: iso(b.expires_at),
        {
            **NULLABLE_TIME,
            "description": "When the batch and its results are removed: expires_after (or RESULTS_TTL) past "
            "its finish; null while processing, or when it is kept until deleted.",
        },
    ),
    Member(
        "callback_url",
        lambda b: shown_url(b.callback_url),
        {
            "type": "string",
            "description": "Called when the batch reaches a final state (GET /batch/{batch_id}/webhooks "
            "shows how that went); shown without its query string, which may hold a token. Present only "
            "when given.",
        },
        optional=True,
    ),
    Member(
        "summary",
        Batch.summary,
        {
            "type": "object",
            "description": "Rows per sentiment; present once the batch is no longer processing. "
            "GET /batch/{batch_id} adds the compound scores' mean and histogram (lists do not).",
            "required": list(SENTIMENTS),
            "properties": {**{s: COUNT for s in SENTIMENTS}, **{m.name: m.schema for m in SCORE_MEMBERS}},
        },
        optional=True,
    ),
)


#: The JSON Schemas of a batch and of its rows (:mod:`core.batches.rows`), for the OpenAPI document.
SCHEMAS = {
    "Batch": object_schema(BATCH_MEMBERS, "A batch: its progress and, once finished, its summary."),
    **ROW_SCHEMAS,
}
