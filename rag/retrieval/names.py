"""Names a question uses that the documents never mention.

"What happened to the accounts at Banco Delta Asia?" cannot be answered from documents that
never say "Banco": however close the passages about North Korean banking come, none of them is
about it. A name here is a capitalised word inside the question ("Natanz", "Song-thaek"); the
question's first word and words that open a sentence, a quotation or a bracket are skipped
(their capital says nothing), and so are titles, months, weekdays and acronyms ("NSC", "THAAD":
users coin them for phrases the documents spell out). A name counts as mentioned when the
documents hold it less an ending of up to three letters, or that plus "a": "Korean",
"Iranian", "Japanese", "Chinese" are mentioned wherever "Korea", "Iran", "Japan", "China" are.
Only the words the user typed are checked, not a follow-up's condensed form. Measured in
docs/quality.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from rag.text import STOPWORDS

_WORD = re.compile(r"[^\W\d_][\w’'-]*")
# Where a sentence (or a quotation, a bracket) opens: the first word's capital says nothing.
_OPENING = re.compile(r"(?:^|[.?!:;…\n][\"”’)\]]*\s+|[\"“(\[]\s*)")
_POSSESSIVE = re.compile(r"[’']s$")
# Capitalised as a matter of course: titles, months and weekdays, which documents often leave out
# (numeric dates, no "Mr").
_ORDINARY = frozenset(
    "mr mrs ms dr prof sir st january february march april may june july august september "
    "october november december monday tuesday wednesday thursday friday saturday sunday".split()
)


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
    >>> unknown_names('He said “Banco closed.” Then Natanz (Mr Delta) went in June.', held)
    ['Natanz', 'Delta']
    """
    question = unicodedata.normalize("NFC", question)
    openings = {m.end() for m in _OPENING.finditer(question)}
    found: list[str] = []
    for match in _WORD.finditer(question):
        word = _POSSESSIVE.sub("", match.group().strip("-’'"))
        if (
            len(word) < 2
            or not word[0].isupper()
            or word.isupper()
            or word.lower() in STOPWORDS
            or word.lower() in _ORDINARY
            or match.start() in openings
        ):
            continue
        parts = [p.lower() for p in re.split(r"[-’']", word) if len(p) > 1]
        if any(not _mentioned(p, known) for p in parts) and word not in found:
            found.append(word)
    return found


def _mentioned(word: str, known: Callable[[str], bool]) -> bool:
    """``word`` or its root as a place name ("korean" -> "korea", "chinese" -> "china")."""
    roots = [word[:-cut] for cut in (1, 2, 3) if len(word) - cut >= 4]
    return any(known(form) for form in (word, *roots, *(root + "a" for root in roots)))
