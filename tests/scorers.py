"""Scorers that tests plug into runner processes the way a user plugs in their own:
``SCORER=tests.scorers:slow`` (see jobrunner.scoring.scorer_function).

Their knobs are the tests' own environment variables, never the service's settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from jobrunner.scoring import fast

#: Texts containing this make ``poisoned`` raise (TEST_POISON_TEXT overrides it).
POISON = "☠POISON☠"


class PoisonedText(RuntimeError):
    """What ``poisoned`` raises for a text carrying the marker."""


def slow(texts: Sequence[str]) -> list[dict[str, float]]:
    """The real scores, after sleeping TEST_SCORE_DELAY_SECONDS (default 0.2) per call: per chunk.
    With TEST_SCORE_STARTED_FILE, that file is made as the first call starts (a test then knows
    the runner is scoring, not merely holding claimed chunks)."""
    started = os.environ.get("TEST_SCORE_STARTED_FILE")
    if started:
        Path(started).touch()
    time.sleep(float(os.environ.get("TEST_SCORE_DELAY_SECONDS", "0.2")))
    return fast(texts)


def poisoned(texts: Sequence[str]) -> list[dict[str, float]]:
    """The real scores, but any call holding a text with the marker raises."""
    marker = os.environ.get("TEST_POISON_TEXT", POISON)
    if any(marker in text for text in texts):
        raise PoisonedText(f"a text contains {marker!r}")
    return fast(texts)


def constant(texts: Sequence[str]) -> list[dict[str, float]]:
    """A scorer that costs nothing: every text neutral. For measuring the queue alone."""
    return [{"neg": 0.0, "neu": 1.0, "pos": 0.0, "compound": 0.0}] * len(texts)


def slow_when_marked(texts: Sequence[str]) -> list[dict[str, float]]:
    """The real scores, after sleeping TEST_SCORE_DELAY_SECONDS per call holding a text with ⏳:
    a batch of long texts, as far as a runner's timing can tell."""
    if any("⏳" in text for text in texts):
        time.sleep(float(os.environ.get("TEST_SCORE_DELAY_SECONDS", "0.2")))
    return fast(texts)


def gated_when_marked(texts: Sequence[str]) -> list[dict[str, float]]:
    """The real scores; a call holding a text with ⏳ first waits (at most 120 s) until the file
    TEST_SCORE_GATE exists, so a test holds one chunk in the scorer for as long as it likes."""
    if any("⏳" in text for text in texts):
        gate, deadline = Path(os.environ["TEST_SCORE_GATE"]), time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return fast(texts)


def stated(texts: Sequence[str]) -> list[dict[str, float]]:
    """The compound a text states as ``compound=X`` (the real scores for other texts); a text
    with the poison marker raises, as ``poisoned`` does."""
    if any(POISON in text for text in texts):
        raise PoisonedText(f"a text contains {POISON!r}")
    scores = fast(texts)
    for i, text in enumerate(texts):
        if text.startswith("compound="):
            scores[i] = {
                "neg": 0.0,
                "neu": 1.0,
                "pos": 0.0,
                "compound": float(text.removeprefix("compound=")),
            }
    return scores


def control_characters(texts: Sequence[str]) -> list[dict[str, float]]:
    """Raises, its message longer than a row's error is kept and every character of it one that
    JSON escapes in six bytes (``\\u0001``): a failed row's error at its longest, as JSON."""
    raise ValueError("\x01" * 3_000)
