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

from core.batches.queue import ClaimedChunk, ScoredChunk
from core.settings import Settings
from jobrunner.scoring import score_array

log = logging.getLogger(__name__)

CRASH_LOOP_MARGIN = 3
#: A failed row's error is kept to this many characters (core/settings_web.py counts them in the
#: longest JSON a row can take).
MAX_ERROR_CHARS = 2_000


def score_chunk(chunk: ClaimedChunk, settings: Settings) -> ScoredChunk:
    """Score the chunk's texts (VADER over pandas, :func:`jobrunner.scoring.score_array`); may raise
    below MAX_ATTEMPTS."""
    texts = chunk.texts
    if chunk.attempts > settings.max_attempts + CRASH_LOOP_MARGIN:
        error = f"given up after {chunk.attempts - 1} attempts that ended without a result"
        log.error("chunk %s: %s", chunk.chunk_id, error)
        return ScoredChunk(chunk, np.full((len(texts), 4), np.nan), [error] * len(texts))
    if chunk.attempts >= settings.max_attempts:
        return _score_one_by_one(chunk, settings)
    return ScoredChunk(chunk, score_array(texts, settings.scorer))


def _score_one_by_one(chunk: ClaimedChunk, settings: Settings) -> ScoredChunk:
    scores = np.full((len(chunk.texts), 4), np.nan)
    errors: list[str | None] = [None] * len(chunk.texts)
    for index, text in enumerate(chunk.texts):
        try:
            scores[index] = score_array([text], settings.scorer)[0]
        except Exception as exc:
            log.warning("chunk %s: a row failed on its last attempt: %s", chunk.chunk_id, exc)
            errors[index] = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    return ScoredChunk(chunk, scores, errors if any(e is not None for e in errors) else None)
