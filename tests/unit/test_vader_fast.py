"""Differential tests: our VADER gives the package's four numbers, exactly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES, SentimentIntensityAnalyzer

from jobrunner.vader_fast import FastVader

REFERENCE = SentimentIntensityAnalyzer()
FAST = FastVader()

LEXICON_WORDS = sorted(REFERENCE.lexicon)
SINGLE_EMOJI = sorted(FAST.emoji)
MULTI_EMOJI = sorted(k for k in REFERENCE.emojis if len(k) > 1)
IDIOM_WORDS = sorted({w for phrase in [*SPECIAL_CASES, *BOOSTER_DICT] for w in phrase.split()})
FUNCTION_WORDS = [
    "but",
    "BUT",
    "But",
    "no",
    "No",
    "least",
    "at",
    "very",
    "never",
    "so",
    "this",
    "without",
    "doubt",
    "kind",
    "of",
    "or",
    "nor",
    "sort",
    "isn't",
    "don't",
    "can't",
    "aint",
    "n't",
]
EMOTICONS = [":)", ":(", ":-)", ":D", ";)", "<3", ":'(", "xD", ":-/", "D:"]
PUNCTUATION = ["!", "!!", "!!!!!", "?", "??", "???", "?!", "...", ",", ";", '"', "'", "(", ")", "-"]
WHITESPACE = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", ""]

word = st.one_of(
    st.sampled_from(LEXICON_WORDS),
    st.sampled_from(sorted(BOOSTER_DICT)),
    st.sampled_from(sorted(NEGATE)),
    st.sampled_from(IDIOM_WORDS),
    st.sampled_from(FUNCTION_WORDS),
    st.sampled_from(EMOTICONS),
    st.sampled_from(SINGLE_EMOJI),
    st.sampled_from(MULTI_EMOJI),
    st.sampled_from(["Привет", "好", "مرحبا", "ΚΑΛΟ", "İstanbul", "straße", "ǅ", "ﬁne"]),
    st.text(min_size=1, max_size=6),
)


@st.composite
def token(draw: st.DrawFn) -> str:
    text = draw(word)
    shape = draw(st.sampled_from(["as is", "as is", "upper", "title", "lower"]))
    text = {"upper": text.upper(), "title": text.title(), "lower": text.lower()}.get(shape, text)
    if draw(st.booleans()):
        text = draw(st.sampled_from(PUNCTUATION)) + text
    if draw(st.booleans()):
        text = text + draw(st.sampled_from(PUNCTUATION + SINGLE_EMOJI[:20]))
    return text


@st.composite
def sentence(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(token(), max_size=40))
    out = draw(st.sampled_from(WHITESPACE[:4]))
    for item in tokens:
        out += item + draw(st.sampled_from(WHITESPACE))
    return out


def assert_same(text: str) -> None:
    assert FAST.polarity_scores(text) == REFERENCE.polarity_scores(text), repr(text)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sentence())
def test_structured_texts_score_identically(text):
    assert_same(text)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
def test_random_unicode_scores_identically(text):
    assert_same(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "VADER is smart, handsome, and funny!",
        "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
        "The plot was good, but the characters are uncompelling and the dialog is not great.",
        "Today only kinda sux! But I'll get by, lol",
        "Catch utf-8 emoji such as 💘 and 💋 and 😁",
        "😀😀 a😀b 😀 ☺️ 👶🏻",
        "good good bad but good good bad bad",  # 'but' rescales the first equal value
        "great but great but great",
        "no good, no, not bad, no or good, nor never so good",
        "it is never so good, never this bad, so good, this bad",
        "without a doubt good, without doubt bad",
        "at least good, very least good, least good",
        "kind of good, sort of bad, kind of, kind",
        "the shit is the bomb, bad ass, yeah right, kiss of death, to die for",
        "GOOD bad GOOD",
        "GOOD BAD",
        "no",
        "no no no",
        "Not bad at all",
        "??? !!! ?!?!",
    ],
)
def test_known_cases(text):
    assert_same(text)


def test_reads_the_package_files():
    assert FAST.lexicon == REFERENCE.lexicon
    assert {k: v for k, v in REFERENCE.emojis.items() if len(k) == 1} == FAST.emoji
