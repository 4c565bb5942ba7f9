"""VADER's ``polarity_scores``, exactly as vaderSentiment 3.3.2 computes it, in linear time.

This module owns the text's side: emoji replaced, tokens stripped and
lowercased once (the package lowercases the whole token list again for each
check of each sentiment word), and each sentiment word's valence with its
capitals, "no" and "least" rules. The rules that look at a word's neighbours,
the 'but' rule and the final score are in :mod:`jobrunner.vader_rules`.

Every rule is kept as the package has it, quirks included (each is marked
``quirk:``), because the point is equal numbers: all four of them, to the last
bit, as the differential tests check.
"""

from __future__ import annotations

import string
from functools import lru_cache

from jobrunner.vader_lexicon import load_emoji, load_lexicon
from jobrunner.vader_rules import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    but_rule,
    negation,
    scalar_inc_dec,
    score_valence,
    special_idioms,
)

_PUNCTUATION = string.punctuation


@lru_cache(maxsize=200_000)
def _strip_punctuation(token: str) -> str:
    # The package's _strip_punc_if_word: short results were emoticons, keep them.
    stripped = token.strip(_PUNCTUATION)
    return token if len(stripped) <= 2 else stripped


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
            but_rule(sentiments, lower.index("but"))
        return score_valence(sentiments, text)

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
                scalar = scalar_inc_dec(words[j], lower[j], valence, is_cap_diff)
                if start_i == 1 and scalar != 0:
                    scalar = scalar * 0.95
                if start_i == 2 and scalar != 0:
                    scalar = scalar * 0.9
                valence = valence + scalar
                valence = negation(valence, lower, start_i, i)
                if start_i == 2:
                    valence = special_idioms(valence, lower, i)

        # The package's _least_check.
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence
