"""Spelling: a question with typos ("wat does the diplomat artcle say?") is searched as meant.

A word is taken for a typo only when neither the index (its BM25 vocabulary) nor an English
dictionary (pyspellchecker's word list) knows it. It is then replaced by the most common English
word one edit away that the index does hold; with no such word it is left as typed. So names,
acronyms and terms of the documents ("DePetris", "MTCR", "Yeonpyeong") are never touched, and
neither is an English word the documents happen not to use.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

# Words of four letters or more (shorter ones have too many neighbours one edit away), not parts
# of a contraction, a hyphenated or an alphanumeric word ("didn't", "F-16", "B61").
WORD = re.compile(r"(?<![\w'’-])[A-Za-z]{4,}(?![\w'’-])")


@cache
def _dictionary() -> Any:
    from spellchecker import SpellChecker

    # Distance 1 only: candidates two edits away cost ~300 ms for a long word and guess wildly.
    return SpellChecker(distance=1)


class SpellingCorrector:
    """``correct(text)`` fixes the typos of ``text``; ``known(word)`` says whether the index holds
    a word (lowercase), so tests can hand in any vocabulary."""

    def __init__(self, known: Callable[[str], bool]) -> None:
        self.known = known

    def correct(self, text: str) -> str:
        """``text`` with its typos fixed, everything else as typed.

        >>> SpellingCorrector({"article", "korea"}.__contains__).correct("What does the artcle say?")
        'What does the article say?'
        >>> SpellingCorrector({"article"}.__contains__).correct("Why didn't Pyongyng appear?")
        "Why didn't Pyongyng appear?"
        """
        return WORD.sub(self._fix, text)

    def _fix(self, match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        dictionary = _dictionary()
        if self.known(lower) or lower in dictionary:
            return word
        held = sorted(c for c in dictionary.candidates(lower) or () if self.known(c))
        if not held:
            return word
        best = max(held, key=dictionary.word_usage_frequency)
        return best.capitalize() if word[0].isupper() else best
