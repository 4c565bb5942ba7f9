"""Score a claimed chunk, isolating the rows that make scoring fail.

Attempts below MAX_ATTEMPTS score the chunk as a whole; an exception sends
the chunk back to the queue with a backoff (see runner.py). At attempt
MAX_ATTEMPTS the rows are scored one by one, so a row that keeps failing is
recorded as failed with its error while the other rows are scored. Past
MAX_ATTEMPTS + CRASH_LOOP_MARGIN (the chunk keeps killing its runners, which
an exception handler cannot see), every row of the chunk is recorded as
failed without scoring, so one bad chunk cannot stall its batch forever.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from core.settings import Settings
from jobrunner.chunks import ClaimedChunk, ScoredChunk
from jobrunner.scoring import COLUMNS, score_texts

log = logging.getLogger(__name__)

CRASH_LOOP_MARGIN = 3


def _score(texts: list[str], settings: Settings) -> pd.DataFrame:
    return score_texts(texts, scorer=settings.scorer)


def _failed_rows(count: int, error: str) -> pd.DataFrame:
    frame = pd.DataFrame({name: [np.nan] * count for name in COLUMNS})
    frame["sentiment"] = None
    frame["error"] = error
    return frame


def score_chunk(chunk: ClaimedChunk, settings: Settings) -> ScoredChunk:
    """Score the chunk's rows over the pandas frame; may raise below MAX_ATTEMPTS."""
    texts = chunk.rows["text"].tolist()
    if chunk.attempts > settings.max_attempts + CRASH_LOOP_MARGIN:
        error = f"given up after {chunk.attempts - 1} attempts that ended without a result"
        log.error("chunk %s: %s", chunk.chunk_id, error)
        return ScoredChunk(chunk, _failed_rows(len(texts), error), failed=len(texts))
    if chunk.attempts >= settings.max_attempts:
        scores = pd.concat([_score_alone(chunk, text, settings) for text in texts], ignore_index=True)
        return ScoredChunk(chunk, scores, failed=int(scores["error"].notna().sum()))
    return ScoredChunk(chunk, _score(texts, settings))


def _score_alone(chunk: ClaimedChunk, text: str, settings: Settings) -> pd.DataFrame:
    try:
        frame = _score([text], settings)
    except Exception as exc:
        log.warning("chunk %s: a row failed on its last attempt: %s", chunk.chunk_id, exc)
        return _failed_rows(1, f"{type(exc).__name__}: {exc}"[:2000])
    frame["error"] = None
    return frame
