"""The lexicon and emoji files of the installed vaderSentiment package, read as the package reads them.

They are read from the package, never copied, so our scorer and the package
always work from the same words and valences.
"""

from __future__ import annotations

from pathlib import Path

import vaderSentiment.vaderSentiment as reference


def _read_package_file(name: str) -> str:
    # As the package reads it: decoded, without newline translation.
    path = Path(reference.__file__).with_name(name)
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


def load_lexicon() -> dict[str, float]:
    """Word to mean valence, from vader_lexicon.txt."""
    lexicon: dict[str, float] = {}
    for line in _read_package_file("vader_lexicon.txt").rstrip("\n").split("\n"):
        if not line:
            continue
        word, measure = line.strip().split("\t")[0:2]
        lexicon[word] = float(measure)
    return lexicon


def load_emoji() -> dict[str, str]:
    """Emoji to its description in words, from emoji_utf8_lexicon.txt."""
    emoji: dict[str, str] = {}
    for line in _read_package_file("emoji_utf8_lexicon.txt").rstrip("\n").split("\n"):
        key, description = line.strip().split("\t")[0:2]
        emoji[key] = description
    return emoji
