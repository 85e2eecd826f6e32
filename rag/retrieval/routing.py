"""Routing rules: what a question says about where its answer is, and how the ranking keeps it.

A question may point at a written piece ("according to the article", ``authored_reference``),
spell out a document's title (``title_phrases``, ``spelled_out``) or ask two things at once
(``question_parts``); ``reserve`` keeps the passages such a rule found in the top k.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.retrieval.passage import Passage
from rag.text import STOPWORDS, content_tokens

AUTHORED_REFERENCE = re.compile(
    r"\b(?:the|this|that)\s+(?:(?P<qualifier>[\w-]+)\s+)?"
    r"(?:article|piece|op-?ed|essay|column|commentary|author|writer|columnist)\b",
    re.IGNORECASE,
)


def authored_reference(query: str, bylines: dict[str, str]) -> list[str]:
    """The files among ``bylines`` (file -> author, publication and title) that the question
    points at with "the article", "the author", "the Diplomat piece"; a qualifier must occur in
    the byline ("the Wikipedia article" does not point at an op-ed).

    >>> bylines = {"op-ed.md": "jane doe, the gazette, why talk"}
    >>> authored_reference("What does the author want?", bylines)
    ['op-ed.md']
    >>> authored_reference("What does the Gazette article say?", bylines)
    ['op-ed.md']
    >>> authored_reference("What does the Wikipedia article say?", bylines)
    []
    """
    found: list[str] = []
    for match in AUTHORED_REFERENCE.finditer(query):
        qualifier = (match.group("qualifier") or "").casefold()
        plain = not qualifier or qualifier in ("same", "whole", "original", "first", "opinion")
        for source, byline in bylines.items():
            if source not in found and (plain or re.search(rf"\b{re.escape(qualifier)}\b", byline)):
                found.append(source)
    return found


_TITLE_WORD = re.compile(r"[0-9a-z]+")


def title_phrases(titles: dict[str, str], n: int = 3) -> dict[tuple[str, ...], str]:
    """Runs of ``n`` consecutive title words that name one document: they begin and end with a
    content word and occur in no other title (file -> title in, phrase -> file out). "missile
    technology control" names one document; "cia world factbook" names a family of them, which
    says nothing about which.

    >>> title_phrases({"a.md": "Nuclear Suppliers Group", "b.md": "Nuclear Suppliers Group members"})
    {('suppliers', 'group', 'members'): 'b.md'}
    """
    owners: dict[tuple[str, ...], set[str]] = {}
    for source, title in titles.items():
        words = _TITLE_WORD.findall(title.casefold())
        for i in range(len(words) - n + 1):
            run = tuple(words[i : i + n])
            if run[0] not in STOPWORDS and run[-1] not in STOPWORDS:
                owners.setdefault(run, set()).add(source)
    return {run: next(iter(files)) for run, files in owners.items() if len(files) == 1}


def spelled_out(query: str, phrases: dict[tuple[str, ...], str], n: int = 3) -> list[str]:
    """The files whose title the question spells out (holds one of its ``title_phrases``).

    >>> phrases = title_phrases({"nsg.md": "Nuclear Suppliers Group", "e.md": "Economy of North Korea"})
    >>> spelled_out("Who founded the nuclear suppliers group?", phrases)
    ['nsg.md']
    >>> spelled_out("Who supplies nuclear fuel to the capital of North Korea?", phrases)
    []
    """
    words = _TITLE_WORD.findall(query.casefold())
    found = (phrases.get(tuple(words[i : i + n])) for i in range(len(words) - n + 1))
    return list(dict.fromkeys(f for f in found if f is not None))


# Where a question goes on to ask a second thing: ", and when did it join the NSG?",
# "but how many does it have now?". Not after a full stop: "What is X? And Y?" is a follow-up
# joined to its question by the condenser, whose later part needs the earlier one.
QUESTION_PARTS = re.compile(
    r"(?<![.?!]),?\s+\b(?:and|but|while|whereas)\s+(?=(?:who|whom|whose|what|when|where|which|why|how"
    r"|is|are|was|were|does|did|do|can|could|has|have|had|will|would|should)\b)",
    re.IGNORECASE,
)


def question_parts(query: str) -> list[str]:
    """Sub-queries for a question that asks several things, one per part; later parts are
    followed by the first part's content words, since they often say "it" for its subject.
    Empty when the question asks one thing.

    >>> question_parts("When did South Korea join the MTCR, and when did it join the NSG?")
    ['When did South Korea join the MTCR', 'when did it join the NSG? south korea join mtcr']
    >>> question_parts("What share of GDP did Japan and South Korea spend on the military?")
    []
    >>> question_parts("What is the capital of Japan? And how many people live in the capital?")
    []
    """
    parts = [part.strip(" ,;") for part in QUESTION_PARTS.split(query)]
    parts = [part for part in parts if len(content_tokens(part)) >= 2]
    if len(parts) < 2:
        return []
    context = " ".join(content_tokens(parts[0]))
    return [parts[0]] + [f"{part} {context}" for part in parts[1:]]


def reserve(ordered: list[Passage], picks: Sequence[Passage], k: int) -> list[Passage]:
    """``ordered`` with each of ``picks`` moved into the first ``k`` (displacing the lowest
    ranked passages that are not picks), the first ``k`` kept in rank order.

    >>> ps = [Passage(c, "", {}, 0.0) for c in "abcd"]
    >>> [p.chunk_id for p in reserve(ps, [ps[3]], 2)]
    ['a', 'd', 'b', 'c']
    """
    rank = {p.chunk_id: i for i, p in enumerate(ordered)}
    wanted = list({p.chunk_id: p for p in picks if p.chunk_id in rank}.values())[:k]
    wanted_ids = {p.chunk_id for p in wanted}
    top = [p for p in ordered if p.chunk_id not in wanted_ids][: k - len(wanted)] + wanted
    top.sort(key=lambda p: rank[p.chunk_id])
    top_ids = {p.chunk_id for p in top}
    return top + [p for p in ordered if p.chunk_id not in top_ids]
