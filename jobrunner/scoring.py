"""Sentiment scoring of a sequence of texts into a pandas DataFrame.

The label comes from VADER's compound score with VADER's own thresholds:
compound >= 0.05 is positive, <= -0.05 negative, anything between neutral.
``score`` is the confidence we report: ``abs(compound)``, the strength of the
polarity VADER found, in [0, 1] (neutral rows therefore score below 0.05).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
SCORERS = ("fast", "reference")
COLUMNS = ["neg", "neu", "pos", "compound", "sentiment", "score"]


@cache
def _reference_polarity() -> Callable[[str], dict[str, float]]:
    # One analyzer per process: building it parses the lexicon files.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer().polarity_scores


@cache
def _fast_polarity() -> Callable[[str], dict[str, float]]:
    from jobrunner.vader_fast import FastVader

    return FastVader().polarity_scores


def polarity_function(scorer: str) -> Callable[[str], dict[str, float]]:
    """The ``polarity_scores`` callable of the named scorer.

    ``fast`` is our exact reimplementation (jobrunner/vader_fast.py: the same
    four numbers as the package, in linear time); ``reference`` is the
    vaderSentiment package itself.
    """
    if scorer == "fast":
        return _fast_polarity()
    if scorer == "reference":
        return _reference_polarity()
    raise ValueError(f"unknown scorer {scorer!r}; choose one of {', '.join(SCORERS)}")


def label(compound: pd.Series) -> pd.Series:
    """positive / negative / neutral from compound, with VADER's thresholds."""
    return pd.Series(_labels(compound.to_numpy()), index=compound.index, dtype=object)


def _labels(compound: np.ndarray) -> np.ndarray:
    labels = np.full(len(compound), "neutral", dtype=object)
    labels[compound >= POSITIVE_THRESHOLD] = "positive"
    labels[compound <= NEGATIVE_THRESHOLD] = "negative"
    return labels


def score_texts(texts: Sequence[str], scorer: str = "fast") -> pd.DataFrame:
    """Score ``texts``; one row per text, in input order.

    Columns: neg, neu, pos, compound (VADER's numbers), sentiment (label) and
    score (abs(compound)). Identical texts are scored once.
    ``scorer="fast"`` (default) or ``"reference"``; both give equal numbers.
    """
    polarity = polarity_function(scorer)
    items = list(texts)
    by_text: dict[str, tuple[float, float, float, float]] = {}
    for text in items:
        if text not in by_text:
            scores = polarity(text)
            by_text[text] = (scores["neg"], scores["neu"], scores["pos"], scores["compound"])
    values = np.array([by_text[text] for text in items], dtype="float64").reshape(len(items), 4)
    compound = values[:, 3]
    # Built in one go from whole columns: pandas costs per operation, and a
    # runner does this for every 100-row chunk.
    return pd.DataFrame(
        {
            "neg": values[:, 0],
            "neu": values[:, 1],
            "pos": values[:, 2],
            "compound": compound,
            "sentiment": _labels(compound),
            "score": np.abs(compound),
        },
        copy=False,
    )
