"""Sentiment scoring of a sequence of texts into a pandas DataFrame.

The label comes from VADER's compound score with VADER's own thresholds:
compound >= 0.05 is positive, <= -0.05 negative, anything between neutral.
``score`` is the confidence we report: ``abs(compound)``, the strength of the
polarity VADER found, in [0, 1] (neutral rows therefore score below 0.05).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
COLUMNS = ["neg", "neu", "pos", "compound", "sentiment", "score"]


#: What a scorer is: texts in, VADER's four numbers (neg, neu, pos, compound) out, one mapping per
#: text in order; neg, neu and pos in [0, 1], compound in [-1, 1]. SCORER=module:callable plugs in
#: any such function (tests plug in slow and failing ones this way).
Scorer = Callable[[Sequence[str]], Sequence[Mapping[str, float]]]


@cache
def _reference_polarity() -> Callable[[str], dict[str, float]]:
    # One analyzer per process: building it parses the lexicon files.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer().polarity_scores


@cache
def _fast_polarity() -> Callable[[str], dict[str, float]]:
    from jobrunner.vader_fast import FastVader

    return FastVader().polarity_scores


def fast(texts: Sequence[str]) -> list[dict[str, float]]:
    """Our exact reimplementation (jobrunner/vader_fast.py: the package's numbers in linear time)."""
    polarity = _fast_polarity()
    return [polarity(text) for text in texts]


def reference(texts: Sequence[str]) -> list[dict[str, float]]:
    """The vaderSentiment package itself."""
    polarity = _reference_polarity()
    return [polarity(text) for text in texts]


BUILT_IN: dict[str, Scorer] = {"fast": fast, "reference": reference}


@cache
def scorer_function(name: str) -> Scorer:
    """The scorer SCORER names: ``fast``, ``reference`` or ``package.module:callable``."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"unknown scorer {name!r}; choose {', '.join(BUILT_IN)} or module:callable")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"scorer {name!r} cannot be loaded: {exc}") from exc
    if not callable(found):
        raise ValueError(f"scorer {name!r} is not callable")
    return found


def label(compound: pd.Series) -> pd.Series:
    """positive / negative / neutral from compound, with VADER's thresholds."""
    return pd.Series(_labels(compound.to_numpy()), index=compound.index, dtype=object)


def _labels(compound: np.ndarray) -> np.ndarray:
    labels = np.full(len(compound), "neutral", dtype=object)
    labels[compound >= POSITIVE_THRESHOLD] = "positive"
    labels[compound <= NEGATIVE_THRESHOLD] = "negative"
    return labels


def score_array(texts: Sequence[str], scorer: str = "fast") -> np.ndarray:
    """Score ``texts`` into a float64 array of shape (len(texts), 4): neg, neu, pos, compound.

    The texts go through pandas (``pd.factorize`` finds the distinct ones in
    C), each distinct text is scored once, and the rows are gathered back with
    one numpy take: no Python work per row beyond the scorer's own.
    ``scorer`` as SCORER names it (see :func:`scorer_function`); ``fast`` and
    ``reference`` give equal numbers.
    """
    if len(texts) == 0:
        return np.empty((0, 4), dtype="float64")
    codes, unique = pd.factorize(pd.Series(texts, dtype=object), sort=False)
    numbers = scorer_function(scorer)(unique.tolist())
    if len(numbers) != len(unique):
        raise ValueError(f"scorer {scorer!r} returned {len(numbers)} results for {len(unique)} texts")
    table = np.array(
        [(n["neg"], n["neu"], n["pos"], n["compound"]) for n in numbers], dtype="float64"
    ).reshape(len(unique), 4)
    # A plugged-in scorer's numbers are checked here, where a bad one is a scoring failure (retried,
    # then isolated row by row), not at the commit, where the database's CHECKs would refuse it.
    shares_ok = (table[:, :3] >= 0) & (table[:, :3] <= 1)
    compound = table[:, 3]
    if not (shares_ok.all() and ((compound >= -1) & (compound <= 1)).all()):  # NaN fails both
        raise ValueError(f"scorer {scorer!r} returned numbers outside VADER's ranges (or not numbers)")
    return table.take(codes, axis=0)


def score_texts(texts: Sequence[str], scorer: str = "fast") -> pd.DataFrame:
    """Score ``texts`` into a DataFrame, one row per text, in input order (for people and tools;
    runners use :func:`score_array`).

    Columns: neg, neu, pos, compound (VADER's numbers), sentiment (label) and
    score (abs(compound)).
    """
    values = score_array(list(texts), scorer)
    compound = values[:, 3]
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
