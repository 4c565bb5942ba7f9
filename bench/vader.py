"""Our VADER against the vaderSentiment package: equality on a deterministic
corpus, speed on both profiles, and time against text length."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES, SentimentIntensityAnalyzer

from bench import Row
from bench.data import texts, tricky_text
from jobrunner.vader_fast import FastVader


def corpus(size: int, seed: int = 2026) -> list[str]:
    """size texts: 40% review-like, 40% short, 20% rule-exercising."""
    reference = SentimentIntensityAnalyzer()
    emoji = sorted(reference.emojis)
    vocabulary = (
        sorted(reference.lexicon)[::7]
        + sorted(BOOSTER_DICT)
        + sorted(NEGATE)
        + [w for phrase in SPECIAL_CASES for w in phrase.split()]
        + ["but", "no", "least", "kind", "of", "never", "so", "this", "without", "doubt", ":)", ":("]
        + emoji[::20]
    )
    rng = random.Random(seed)
    share = size * 2 // 5
    return (
        texts("review", share, seed)
        + texts("short", share, seed + 1)
        + [tricky_text(rng, vocabulary) for _ in range(size - 2 * share)]
    )


def _seconds(function: Callable[[str], object], items: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            function(item)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def run(quick: bool = False) -> dict:
    reference = SentimentIntensityAnalyzer().polarity_scores
    fast = FastVader().polarity_scores
    size = 10_000 if quick else 100_000
    differences = [t for t in corpus(size) if fast(t) != reference(t)]

    repeat = 3
    speed = {}
    for profile, count in (("review", 2_000 if quick else 10_000), ("short", 10_000 if quick else 50_000)):
        items = texts(profile, count, seed=99)
        ref_s = _seconds(reference, items, repeat)
        fast_s = _seconds(fast, items, repeat)
        speed[profile] = {
            "reference_per_s": count / ref_s,
            "fast_per_s": count / fast_s,
            "ratio": ref_s / fast_s,
        }

    long_text = " ".join(texts("review", 2_000, seed=5))
    emoji = "".join(sorted(FastVader().emoji)[:200])
    scaling = []
    for kind, source, lengths in (
        ("chars", long_text, (1_250, 2_500, 5_000, 10_000)),
        ("emoji", emoji * 20, (250, 500, 1_000, 2_000)),
    ):
        for length in lengths:
            item = [source[:length]]
            scaling.append(
                {
                    "kind": kind,
                    "length": length,
                    "reference_s": _seconds(reference, item, repeat),
                    "fast_s": _seconds(fast, item, repeat),
                }
            )
    return {
        "corpus": size,
        "differences": len(differences),
        "examples": differences[:5],
        "speed": speed,
        "scaling": scaling,
    }


def rows(v: dict) -> list[Row]:
    """``make bench``'s rows for :func:`run`: equality, speed per profile, time against length."""
    table: list[Row] = [
        (
            f"exact VADER: {v['corpus']:,} generated texts",
            "vaderSentiment 3.3.2, same texts",
            f"{v['differences']} differences in (neg, neu, pos, compound)",
            "0",
        )
    ]
    for profile, target in (("review", "≥ 2×"), ("short", "≥ 1.5×")):
        s = v["speed"][profile]
        table.append(
            (
                f"VADER speed, {profile} texts",
                f"package: {s['reference_per_s']:,.0f} texts/s",
                f"**{s['ratio']:.2f}×** ({s['fast_per_s']:,.0f} texts/s)",
                target,
            )
        )
    for kind in ("chars", "emoji"):
        points = [p for p in v["scaling"] if p["kind"] == kind]
        ref = " / ".join(f"{p['reference_s'] * 1e3:.1f}" for p in points)
        fast = " / ".join(f"{p['fast_s'] * 1e3:.2f}" for p in points)
        lengths = " / ".join(f"{p['length']:,}" for p in points)
        growth_ref = points[-1]["reference_s"] / points[0]["reference_s"]
        growth_fast = points[-1]["fast_s"] / points[0]["fast_s"]
        table.append(
            (
                f"time vs length, {kind} {lengths}",
                f"package ms: {ref} (×{growth_ref:.0f} for 8× length)",
                f"ours ms: {fast} (×{growth_fast:.1f} for 8× length)",
                "linear (≈ ×8)",
            )
        )
    return table
