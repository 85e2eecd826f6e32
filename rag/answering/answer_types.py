"""What kind of thing a question asks for, and whether a sentence gives one.

Only kinds a pattern can check strictly (issue 15, lever 3): a day-level date for "on what date",
an amount of money for "how much money" or "how much did it cost", and a count of the thing named
after "how many", given as a number beside one of that thing's words ("200,000 political
prisoners" answers "how many political prisoners" but not "how many prison camps"). A number,
date or amount already in the question does not count: "On what date in 2012 ..." is not
answered by a sentence that says "in 2012".

A year the question names pins it to a time: a sentence that names only other years does not
give the count ("3,800 refugees between 1994 and 2003" for "how many defectors in 2015"), and
quotes from passages that never mention the year (nor does their document's title, section or
publication) answer another question ("Who chaired the NSG in 2016?").

On-topic questions the documents cannot answer are mostly of this shape: they ask for a detail
of something the documents discuss, so retrieval finds the passage about it, which lacks the
detail. The extractive answerer uses this to pick a sentence that has the detail, or to refuse
when no candidate does (docs/quality.md). Only a single question is checked: in one of two
parts ("How many sailors died, and how did Seoul respond?") the other part may be answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.retrieval.routing import question_parts

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY_DATE = re.compile(
    rf"\b{_MONTH}\s+\d{{1,2}}\b|\b\d{{1,2}}\s+{_MONTH}\b|\b\d{{4}}-\d\d-\d\d\b|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"[$€£¥₩]|\b(?:dollars?|usd|euros?|won|yuan|renminbi|rmb|yen|rials?|roubles?|rubles?|pounds sterling)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"^\d[\d,.]*$|^(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty"
    r"|fifty|dozens?|hundreds?|thousands?|millions?|billions?)$",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
# A stop after one of these is no sentence break: "the U.S. Treasury", "Mr. Kim" (an acronym
# written without stops, "the FATF. How ...", does end one).
_ABBREVIATION = re.compile(
    r"(?:^|[\s.(])(?:[A-Za-z]|Mr|Mrs|Ms|Dr|St|Gen|Sen|Rep|Gov|Jr|No|Nos|Art|Sec|vs)\.$"
)
# A second part that opens with a preposition or an adverb after a comma: ", and in which years
# did it test?", ", and roughly where ..." ("When and in which city ..." is one part). The search
# does not split there (measured worse: docs/quality.md), but the kind or year such a question
# asks for may belong to either part.
_LATER_PART = re.compile(
    r",\s+and\s+(?:in|on|at|by|for|from|since|during|under|roughly|approximately|about|also)\s+"
    r"(?:who|whom|whose|what|when|where|which|why|how)\b",
    re.IGNORECASE,
)
# Left out when counting how far a number stands from the counted thing: "47 of the Allies".
_FILLER = frozenset("of the a an and or to in on at for by with as its their his her our".split())
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
_TOKEN = re.compile(r"[^\W\d_][\w'’\-]*|\d[\d,.]*\d|\d")

_ASKS_DATE = re.compile(
    r"\b(?:what|which|exact|precise|specific)\s+(?:exact\s+|specific\s+)?(?:date|day)\b|\bwhat day\b",
    re.IGNORECASE,
)
_ASKS_MONEY = re.compile(
    r"\bhow much (?:money|funding|cash)\b"
    r"|\bhow much (?:did|does|do|will|would|was|is)\b.{0,60}\b(?:cost|pay|paid|earn|spend|spent|worth)\b"
    r"|\bwhat (?:was|is|were|are) the (?:cost|price|budget)\b|\bhow many dollars\b",
    re.IGNORECASE,
)
_ASKS_COUNT = re.compile(r"\bhow many\b(.*)", re.IGNORECASE | re.DOTALL)
# Where the counted thing's words end: an auxiliary, a preposition, a relative pronoun, a verb in
# the past tense ("how many people died"), or punctuation (tokens stop at it).
_STOP_COUNTED = frozenset(
    "is are was were be been do does did has have had will would can could should may might must"
    " in of on at for to from by with per under during since before after between among about"
    " that which who whom whose and or but".split()
)
# Counts of these are given without the word ("2.86 million live in Pyongyang").
_GENERIC = frozenset("people persons individuals times".split())
WINDOW = 3  # a count's number stands within this many content words of the counted thing's
STEM = 5  # words match on their first letters ("prisoners" ~ "prison", "votes" ~ "vote")


@dataclass(frozen=True)
class Asked:
    """What a question asks for: ``kind`` is "date", "money" or "count"; ``words`` the stems of
    the counted thing (empty: any number counts)."""

    kind: str
    words: tuple[str, ...] = ()


def single(question: str) -> bool:
    """Whether ``question`` asks one thing: not two parts ("How many sailors died, and how did
    Seoul respond?", "Has it signed the treaty, and in which years did it test?"), no sentence of
    context before it. A part may well be answered without the kind the other asks for.

    >>> single("How many tests did North Korea carry out in 2016?")
    True
    >>> single("Has North Korea signed the test ban treaty, and in which years did it test?")
    False
    >>> single("When and in which city was the 1994 Agreed Framework signed?")
    True
    """
    if question_parts(question) or _LATER_PART.search(question):
        return False
    return len(sentences(question)) == 1


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends, but not after an abbreviation.

    >>> sentences("The law counts FATF members. How many does the U.S. Treasury list?")
    ['The law counts FATF members.', 'How many does the U.S. Treasury list?']
    """
    text = text.strip()
    out: list[str] = []
    start = 0
    for m in _SENTENCE_BREAK.finditer(text):
        head = text[start : m.start()]
        if not _ABBREVIATION.search(head):
            out.append(head)
            start = m.end()
    out.append(text[start:])
    return out


def pinned_years(question: str) -> set[str]:
    """The years a single question names ("How much did China trade with the North in 2016?")."""
    return years_in(question) if single(question) else set()


def years_in(text: str) -> set[str]:
    """The years ``text`` names.

    >>> sorted(years_in("Signed in 1994, broken in the winter of 2002; 12,000 troops."))
    ['1994', '2002']
    """
    return set(_YEAR.findall(text))


def asked_for(question: str) -> Asked | None:
    """The kind of thing ``question`` asks for, when it is one this module checks.

    >>> asked_for("On what date did KEDO break ground?")
    Asked(kind='date', words=())
    >>> asked_for("How many North Korean defectors reached Seoul in 2015?")
    Asked(kind='count', words=('north', 'korea', 'defec'))
    >>> asked_for("How many people died?"), asked_for("Why did it fail?")
    (Asked(kind='count', words=()), None)
    """
    if not single(question):
        return None
    if _ASKS_DATE.search(question):
        return Asked("date")
    if _ASKS_MONEY.search(question):
        return Asked("money")
    match = _ASKS_COUNT.search(question)
    if match is None:
        return None
    words: list[str] = []
    for token in _TOKEN.findall(match.group(1).split("?")[0]):
        low = token.lower()
        if low in _STOP_COUNTED or (low.endswith("ed") and words):
            break
        if low in ("the", "a", "an", "other", "more", "different"):
            continue
        if low in _GENERIC:
            words = []
            break
        words.append(low[:STEM])
        if len(words) == 3:
            break
    return Asked("count", tuple(words))


def gives(asked: Asked, text: str, question: str) -> bool:
    """Whether ``text`` holds a thing of the kind asked that ``question`` does not hold already."""
    seen = question.casefold()
    pinned = years_in(question)
    if pinned:
        # "How many defectors reached Seoul in 2015?" is not answered by a count for 1994-2003:
        # a sentence that names years must name one the question names.
        years = years_in(text)
        if years and not years & pinned:
            return False
    if asked.kind == "date":
        return any(m.group(0).casefold() not in seen for m in _DAY_DATE.finditer(text))
    if asked.kind == "money":
        return any(m.group(0).casefold() not in seen for m in _MONEY.finditer(text))
    tokens = [t for t in _TOKEN.findall(text) if t.lower() not in _FILLER]
    for i, token in enumerate(tokens):
        if not _NUMBER.match(token) or token.casefold() in seen:
            continue
        if not asked.words:
            return True
        near = tokens[max(0, i - WINDOW) : i + WINDOW + 1]
        if any(t.lower()[:STEM] in asked.words for t in near):
            return True
    return False
