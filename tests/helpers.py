"""Helpers that unit and integration tests share: test data (review-like texts, CSV files) and
``wait_for``. Nothing here needs a database; helpers that do (table counts, uploads, scoring a
chunk in this process) live in tests/integration/helpers.py."""

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
