"""Names a question uses that the documents never mention.

"What happened to the accounts at Banco Delta Asia?" cannot be answered from documents that
never say "Banco": however close the passages about North Korean banking come, none of them is
about it. A name here is a capitalised word inside the question ("Natanz", "Song-thaek"); the
question's first word and words after a sentence break are skipped (their capital says
nothing), and so are acronyms ("NSC", "THAAD"), which users coin for phrases the documents spell
out. A name counts as mentioned when the documents hold it less an ending of up to three
letters, or that plus "a": "Korean", "Iranian", "Japanese", "Chinese" are mentioned wherever
"Korea", "Iran", "Japan", "China" are. Measured in docs/quality.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rag.text import STOPWORDS

_WORD = re.compile(r"[^\W\d_][\w’'-]*")
_SENTENCE_OPENER = re.compile(r"(?:^|[.?!:;\"“(]\s*)$")
_POSSESSIVE = re.compile(r"[’']s$")


def unknown_names(question: str, known: Callable[[str], bool]) -> list[str]:
    """The names in ``question`` that ``known`` (does some indexed chunk hold this lowercase word?) says no
    document holds, in the order they occur; a hyphenated name counts when any part is unknown.

    >>> held = {"north", "korea", "kim", "jong", "un", "banco"}.__contains__
    >>> unknown_names("How much money did North Korea keep at Banco Delta Asia?", held)
    ['Delta', 'Asia']
    >>> unknown_names("Did Kim Jong-un visit Natanz's plant? When did THAAD arrive?", held)
    ['Natanz']
    >>> unknown_names("Korea's Musudan missile: what range?", held)
    ['Musudan']
    >>> unknown_names("Where is the North Korean coast?", held)
    []
    """
    found: list[str] = []
    for match in _WORD.finditer(question):
        word = _POSSESSIVE.sub("", match.group().strip("-’'"))
        if (
            len(word) < 2
            or not word[0].isupper()
            or word.isupper()
            or word.casefold() in STOPWORDS
            or _SENTENCE_OPENER.search(question[: match.start()])
        ):
            continue
        parts = [p.casefold() for p in re.split(r"[-’']", word) if len(p) > 1]
        if any(not _mentioned(p, known) for p in parts) and word not in found:
            found.append(word)
    return found


def _mentioned(word: str, known: Callable[[str], bool]) -> bool:
    """``word`` or its root as a place name ("korean" -> "korea", "chinese" -> "china")."""
    roots = [word[:-cut] for cut in (1, 2, 3) if len(word) - cut >= 4]
    return any(known(form) for form in (word, *roots, *(root + "a" for root in roots)))
