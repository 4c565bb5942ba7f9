"""Test data and small waiting helpers shared by the test modules."""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_WORDS = [
    "good",
    "great",
    "awful",
    "terrible",
    "fine",
    "okay",
    "love",
    "hate",
    "not",
    "very",
    "extremely",
    "product",
    "service",
    "delivery",
    "price",
    "quality",
    "support",
    "refund",
    "slow",
    "fast",
    "broken",
    "perfect",
    "meh",
    "the",
    "it",
    "was",
    "is",
    "and",
    "but",
    "really",
    "kind",
    "of",
    "sort",
    "never",
    "nothing",
    "nobody",
    "happy",
    "sad",
    "angry",
    ":)",
    ":(",
    "😀",
    "😡",
]


def sample_texts(count: int, seed: int = 7) -> list[str]:
    """Review-like texts with the awkward bits: quotes, commas, newlines, CAPS, emoji."""
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 25))]
        if index % 7 == 0:
            words[0] = words[0].upper() + "!!!"
        text = " ".join(words)
        if index % 11 == 0:
            text = f'she said "{text}", then left'
        if index % 13 == 0:
            text = text + "\nsecond line, with comma"
        texts.append(text)
    return texts


def make_csv(texts: list[str], *, ids: list[str] | None = None, crlf: bool = False) -> bytes:
    """A CSV file (id,text) of the texts, RFC 4180 quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["id", "text"])
    for index, text in enumerate(texts):
        writer.writerow([ids[index] if ids else f"r{index + 1}", text])
    return buffer.getvalue().encode("utf-8")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def uploads_copying(conn) -> int:  # type: ignore[no-untyped-def]
    """How many uploads are inside their COPY into staging in ``conn``'s database: each holds an
    upload slot, taken before its body is read."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'COPY batch_rows %'"
    )
    return conn.execute(query).fetchone()[0]


def process(conn, chunk, scorer: str = "fast") -> bool:  # type: ignore[no-untyped-def]
    """Score and finish one claimed chunk in this process, as a runner named 'test:0' would."""
    from core.settings import Settings
    from jobrunner.chunk_scoring import score_chunk
    from jobrunner.chunks import RunnerIdentity, finish_chunk

    return finish_chunk(
        conn, score_chunk(chunk, Settings(scorer=scorer)), RunnerIdentity("test:0", "test", 0, scorer)
    )


def process_next(conn):  # type: ignore[no-untyped-def]
    """Claim the next chunk and process it; the chunk, or None when the queue is empty."""
    from jobrunner.chunks import claim_chunk

    chunk = claim_chunk(conn, "test:0", 60)
    if chunk is not None:
        assert process(conn, chunk)
    return chunk


def score_everything(conn) -> int:  # type: ignore[no-untyped-def]
    """Claim and finish every ready chunk in this process, as a runner would; chunks done."""
    done = 0
    while process_next(conn) is not None:
        done += 1
    return done
