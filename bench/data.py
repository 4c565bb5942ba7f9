"""Deterministic benchmark data: review-like texts and short texts, as CSV files."""

from __future__ import annotations

import csv
import random
from pathlib import Path

_POSITIVE = "good great excellent love loved amazing perfect happy recommend fantastic nice".split()
_NEGATIVE = "bad awful terrible hate hated broken poor disappointing worst slow rude".split()
_NEUTRAL = (
    "the product arrived on time and i used it for a week with my family at home "
    "box price delivery support order screen battery size colour shop"
).split()
_BOOST = "very really extremely so totally kind-of barely".split()
_EXTRAS = ["not", "never", "but", "!!!", "?", ":)", ":(", "😀", "😡", "👍", "LOL", "GREAT"]


def review_text(rng: random.Random) -> str:
    """Mostly 10-80 words, with negations, boosters, caps, emoji, commas, quotes, newlines."""
    words = []
    for _ in range(rng.randint(10, 80)):
        roll = rng.random()
        if roll < 0.1:
            words.append(rng.choice(_POSITIVE))
        elif roll < 0.18:
            words.append(rng.choice(_NEGATIVE))
        elif roll < 0.25:
            words.append(rng.choice(_BOOST))
        elif roll < 0.3:
            words.append(rng.choice(_EXTRAS))
        else:
            words.append(rng.choice(_NEUTRAL))
    if rng.random() < 0.1:
        words[0] = words[0].upper()
    text = " ".join(words)
    if rng.random() < 0.2:
        text = text.replace(" and ", ", and ", 1)
    if rng.random() < 0.05:
        text = f'"{text}" she wrote'
    if rng.random() < 0.03:
        text += "\nP.S. see above"
    return text


def short_text(rng: random.Random) -> str:
    pool = _POSITIVE + _NEGATIVE + _NEUTRAL + _BOOST
    return " ".join(rng.choice(pool) for _ in range(rng.randint(2, 5)))


def texts(profile: str, count: int, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    make = review_text if profile == "review" else short_text
    return [make(rng) for _ in range(count)]


def write_csv(path: Path, profile: str, count: int, seed: int = 2026) -> Path:
    """Write ``count`` rows of ``profile`` to ``path`` (cached by name)."""
    if path.exists():
        return path
    rng = random.Random(seed)
    make = review_text if profile == "review" else short_text
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for index in range(count):
            writer.writerow([f"r{index}", make(rng)])
    tmp.rename(path)
    return path


def tricky_text(rng: random.Random, vocabulary: list[str]) -> str:
    """Texts that exercise VADER's rules: lexicon words, negations, boosters,
    'but', caps, punctuation runs, emoticons and emoji, glued punctuation."""
    tokens = []
    for _ in range(rng.randint(0, 30)):
        token = rng.choice(vocabulary)
        roll = rng.random()
        if roll < 0.1:
            token = token.upper()
        elif roll < 0.15:
            token += rng.choice(["!", "!!", "?", "??", "...", ",", '"'])
        elif roll < 0.2:
            token = rng.choice(['"', "(", "'"]) + token
        tokens.append(token)
    return rng.choice([" ", " ", "  ", "\n"]).join(tokens)
