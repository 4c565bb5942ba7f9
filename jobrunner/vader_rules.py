"""VADER's rules around a sentiment word, its 'but' rule and a sentence's score (vaderSentiment 3.3.2).

:class:`jobrunner.vader_fast.FastVader` finds a text's sentiment words and
their valences; these are the package's ``_scalar_inc_dec``,
``_negation_check``, ``_special_idioms_check``, ``_but_check`` and
``score_valence``, operation for operation (quirks marked ``quirk:``) so the
numbers are equal to the last bit. They take the tokens already lowercased,
and the 'but' rule keeps a heap of positions per value: O(n log n), not O(n^2).
"""

from __future__ import annotations

import heapq
import math

import vaderSentiment.vaderSentiment as reference

C_INCR = reference.C_INCR
N_SCALAR = reference.N_SCALAR
BOOSTER_DICT: dict[str, float] = reference.BOOSTER_DICT
SPECIAL_CASES: dict[str, float] = reference.SPECIAL_CASES
NEGATE = frozenset(reference.NEGATE)
_SO_THIS = ("so", "this")


def _is_negation(word_lower: str) -> bool:
    return word_lower in NEGATE or "n't" in word_lower


def scalar_inc_dec(word: str, word_lower: str, valence: float, is_cap_diff: bool) -> float:
    scalar = 0.0
    if word_lower in BOOSTER_DICT:
        scalar = BOOSTER_DICT[word_lower]
        if valence < 0:
            scalar *= -1
        if word.isupper() and is_cap_diff:
            if valence > 0:
                scalar += C_INCR
            else:
                scalar -= C_INCR
    return scalar


def negation(valence: float, lower: list[str], start_i: int, i: int) -> float:
    if start_i == 0:
        if _is_negation(lower[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        if lower[i - 2] == "never" and lower[i - 1] in _SO_THIS:
            valence = valence * 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif _is_negation(lower[i - 2]):
            valence = valence * N_SCALAR
    else:
        # quirk: operator precedence makes any "so"/"this" just before the
        # word count as "never so", with or without a "never".
        if (lower[i - 3] == "never" and lower[i - 2] in _SO_THIS) or lower[i - 1] in _SO_THIS:
            valence = valence * 1.25
        elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
            pass
        elif _is_negation(lower[i - 3]):
            valence = valence * N_SCALAR
    return valence


def special_idioms(valence: float, lower: list[str], i: int) -> float:
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for sequence in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if sequence in SPECIAL_CASES:
            valence = SPECIAL_CASES[sequence]
            break
    if len(lower) - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if len(lower) - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


def but_rule(sentiments: list[float], but_index: int) -> None:
    """The package's 'but' rule, same result, O(n log n) instead of O(n^2).

    For each position k in order, the package takes the value v now at k,
    finds the *first* position holding a value equal to v (quirk: not k
    itself when an earlier position holds an equal value, possibly one this
    rule already rescaled), and scales that position by 0.5 before the 'but'
    and 1.5 after it. We keep a min-heap of positions per value (equal floats
    and ints share a dict key, as they compare equal) and drop stale entries
    lazily.
    """
    positions: dict[float, list[int]] = {}
    for index, value in enumerate(sentiments):
        positions.setdefault(value, []).append(index)  # ascending: already a heap
    for k in range(len(sentiments)):
        value = sentiments[k]
        heap = positions[value]
        while sentiments[heap[0]] != value:
            heapq.heappop(heap)
        first = heap[0]
        if first < but_index:
            new = value * 0.5
        elif first > but_index:
            new = value * 1.5
        else:
            continue
        sentiments[first] = new
        if new != value:
            heapq.heappop(heap)
            heapq.heappush(positions.setdefault(new, []), first)
        # else: the position keeps an equal value (0 * x); it stays first.


def score_valence(sentiments: list[float], text: str) -> dict[str, float]:
    """The package's score_valence, operation for operation."""
    if sentiments:
        sum_s = float(sum(sentiments))
        ep_count = min(text.count("!"), 4)
        ep_amplifier = ep_count * 0.292
        qm_count = text.count("?")
        qm_amplifier = 0
        if qm_count > 1:
            qm_amplifier = qm_count * 0.18 if qm_count <= 3 else 0.96
        punct_emph_amplifier = ep_amplifier + qm_amplifier
        if sum_s > 0:
            sum_s += punct_emph_amplifier
        elif sum_s < 0:
            sum_s -= punct_emph_amplifier

        compound = sum_s / math.sqrt((sum_s * sum_s) + 15)
        if compound < -1.0:
            compound = -1.0
        elif compound > 1.0:
            compound = 1.0

        # The package's _sift_sentiment_scores, in the same order, over the
        # non-zero values only (zeros add nothing but a neutral count).
        nonzero = [value for value in sentiments if value != 0]
        pos_sum = 0.0
        neg_sum = 0.0
        neu_count = len(sentiments) - len(nonzero)
        for sentiment in nonzero:
            if sentiment > 0:
                pos_sum += float(sentiment) + 1
            else:
                neg_sum += float(sentiment) - 1

        if pos_sum > math.fabs(neg_sum):
            pos_sum += punct_emph_amplifier
        elif pos_sum < math.fabs(neg_sum):
            neg_sum -= punct_emph_amplifier

        total = pos_sum + math.fabs(neg_sum) + neu_count
        pos = math.fabs(pos_sum / total)
        neg = math.fabs(neg_sum / total)
        neu = math.fabs(neu_count / total)
    else:
        compound = pos = neg = neu = 0.0
    return {"neg": round(neg, 3), "neu": round(neu, 3), "pos": round(pos, 3), "compound": round(compound, 4)}
