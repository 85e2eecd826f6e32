"""Verification: does a sentence of the answer hold up against the passages it cites?

The chain checks every sentence with a ``Verifier``: ``verify_by_match`` (no model) by default,
a local model's yes/no (``rag.answering.llamacpp.llamacpp_verifier``) when one answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.retrieval import Passage
from rag.text import is_quoted, overlap

# Judges whether a claim is supported by the passages it cites (None: cannot tell).
Verifier = Callable[[str, Sequence[Passage]], bool | None]

_FIRST_WORD = re.compile(r"[a-z]+")


def verify_by_match(claim: str, passages: Sequence[Passage]) -> bool | None:
    """Exact support check: the claim is quoted from, or nearly all its words are in, a passage."""
    if not passages:
        return False
    if any(is_quoted(claim, p.text) for p in passages):
        return True
    return max(overlap(claim, p.title + " " + p.section + " " + p.text) for p in passages) >= 0.9 or None


def parse_verdict(reply: str) -> bool | None:
    """A judge model's reply as a verdict: its first word ``yes`` -> True, ``no`` -> False,
    anything else -> None (cannot tell).

    >>> parse_verdict(" Yes."), parse_verdict("**NO**"), parse_verdict("maybe"), parse_verdict("")
    (True, False, None, None)
    """
    first = _FIRST_WORD.search(reply.lower())
    return {"yes": True, "no": False}.get(first.group(0)) if first else None
