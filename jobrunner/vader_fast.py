"""VADER's ``polarity_scores``, exactly as vaderSentiment 3.3.2 computes it, in linear time.

The package spends most of its time on work that does not change its output:
it lowercases the whole token list again for each of up to three negation
checks and an idiom check per sentiment word (quadratic in the text length),
walks every character of every text in Python looking for emoji, scans a
60-word list for each negation test, and its 'but' rule calls ``list.index``
plus ``pop``/``insert`` per element. Here each text is lowercased once, emoji
are replaced by one regular-expression pass, negation words are a set, and the
'but' rule keeps, for each value, a heap of the positions holding it.

Every rule is kept as the package has it, quirks included (each is marked
``quirk:`` below), because the point is equal numbers: all four of them, to
the last bit, as the differential tests check. The lexicon and emoji files
are read from the installed ``vaderSentiment`` package, not copied.
"""

from __future__ import annotations

import heapq
import math
import string
from functools import lru_cache

import vaderSentiment.vaderSentiment as reference

from jobrunner.vader_lexicon import load_emoji, load_lexicon

B_INCR = reference.B_INCR
C_INCR = reference.C_INCR
N_SCALAR = reference.N_SCALAR
BOOSTER_DICT: dict[str, float] = reference.BOOSTER_DICT
SPECIAL_CASES: dict[str, float] = reference.SPECIAL_CASES
NEGATE = frozenset(reference.NEGATE)
_SO_THIS = ("so", "this")
_PUNCTUATION = string.punctuation


@lru_cache(maxsize=200_000)
def _strip_punctuation(token: str) -> str:
    # The package's _strip_punc_if_word: short results were emoticons, keep them.
    stripped = token.strip(_PUNCTUATION)
    return token if len(stripped) <= 2 else stripped


def _is_negation(word_lower: str) -> bool:
    return word_lower in NEGATE or "n't" in word_lower


class FastVader:
    """Drop-in for ``SentimentIntensityAnalyzer().polarity_scores``."""

    def __init__(self) -> None:
        self.lexicon = load_lexicon()
        emoji = load_emoji()
        # quirk: the package looks emoji up one code point at a time, so only
        # single-code-point keys can ever match.
        self.emoji = {key: value for key, value in emoji.items() if len(key) == 1}
        self._emoji_chars = frozenset(self.emoji)
        # Words that can carry a valence: in the lexicon, and not boosters
        # (the package gives boosters 0 before it looks at the lexicon).
        self._scoring_words = frozenset(w for w in self.lexicon if w not in BOOSTER_DICT)
        self._token_cache: dict[str, tuple[str, str, bool]] = {}

    # -- text preparation -------------------------------------------------
    def _replace_emoji(self, text: str) -> str:
        """Emoji become their descriptions; a space goes before one unless it
        starts the text or follows a plain space (quirk: only ' ' counts, and
        nothing is put after the description)."""
        emoji = self.emoji
        if self._emoji_chars.isdisjoint(text):  # the common case, in C
            return text
        parts = []
        prev_space = True
        for char in text:
            description = emoji.get(char)
            if description is None:
                parts.append(char)
                prev_space = char == " "
            else:
                if not prev_space:
                    parts.append(" ")
                parts.append(description)
                prev_space = False
        return "".join(parts)

    # -- scoring ----------------------------------------------------------
    def _tokens(self, text: str) -> tuple[list[str], list[str], list[bool]]:
        """Tokens with punctuation stripped as the package does, their lower
        case and whether each is ALL CAPS; per-token work is cached."""
        cache = self._token_cache
        if len(cache) > 500_000:
            cache.clear()
        infos = []
        for token in text.split():
            info = cache.get(token)
            if info is None:
                word = _strip_punctuation(token)
                info = cache[token] = (word, word.lower(), word.isupper())
            infos.append(info)
        return [i[0] for i in infos], [i[1] for i in infos], [i[2] for i in infos]

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not self._emoji_chars.isdisjoint(text):
            text = self._replace_emoji(text)
        text = text.strip()
        words, lower, upper = self._tokens(text)
        count = len(words)
        scoring = self._scoring_words
        hits = [
            i
            for i, word in enumerate(lower)
            if word in scoring and not (word == "kind" and i < count - 1 and lower[i + 1] == "of")
        ]
        if not hits:
            # Every valence is 0: the package's arithmetic gives these numbers.
            return {"neg": 0.0, "neu": 1.0 if count else 0.0, "pos": 0.0, "compound": 0.0}
        caps = sum(upper)
        is_cap_diff = 0 < count - caps < count
        sentiments: list[float] = [0] * count
        for i in hits:
            sentiments[i] = self._valence(words, lower, i, is_cap_diff)
        if "but" in lower:
            _but_rule(sentiments, lower.index("but"))
        return _score(sentiments, text)

    def _valence(self, words: list[str], lower: list[str], i: int, is_cap_diff: bool) -> float:
        lexicon = self.lexicon
        count = len(words)
        item_lower = lower[i]
        valence = lexicon[item_lower]
        if item_lower == "no" and i != count - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = lexicon[item_lower] * N_SCALAR
        if words[i].isupper() and is_cap_diff:
            # quirk: a valence of exactly 0 is pushed down, not up.
            valence = valence + C_INCR if valence > 0 else valence - C_INCR

        for start_i in range(3):
            j = i - (start_i + 1)
            if i > start_i and lower[j] not in lexicon:
                scalar = _scalar_inc_dec(words[j], lower[j], valence, is_cap_diff)
                if start_i == 1 and scalar != 0:
                    scalar = scalar * 0.95
                if start_i == 2 and scalar != 0:
                    scalar = scalar * 0.9
                valence = valence + scalar
                valence = _negation(valence, lower, start_i, i)
                if start_i == 2:
                    valence = _special_idioms(valence, lower, i)

        # The package's _least_check.
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence


def _scalar_inc_dec(word: str, word_lower: str, valence: float, is_cap_diff: bool) -> float:
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


def _negation(valence: float, lower: list[str], start_i: int, i: int) -> float:
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


def _special_idioms(valence: float, lower: list[str], i: int) -> float:
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


def _but_rule(sentiments: list[float], but_index: int) -> None:
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


def _score(sentiments: list[float], text: str) -> dict[str, float]:
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
