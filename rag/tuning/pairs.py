"""Training pairs for the sentence reader, mined with the app's own retrieval.

A written question's target sentence is the positive. Its negatives are the sentences the
extractive answerer would have weighed for that question: those of the passages retrieval ranks
first, hardest (best base score) first, plus a few easy ones. They are on the question's topic
but do not state its answer, which is what an on-topic question the documents cannot answer
looks like: the reader learns to score those low, not only to rank.

A sentence that restates the target (most of its words) is left out rather than called a
negative: the corpus repeats facts across documents, and such a sentence may well answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.answering.extractive import Candidate, candidates
from rag.retrieval import Passage
from rag.text import overlap, quote_key

HARD_NEGATIVES = 7
EASY_NEGATIVES = 2
RESTATES = 0.5  # a candidate holding this share of the target's words may answer too


@dataclass(frozen=True)
class Example:
    """One (question, sentence) pair: ``text`` is the sentence as the reader sees it at answer
    time (its section path, then the sentence); ``group`` is the question's key."""

    question: str
    text: str
    label: float
    group: str


def reader_text(section: str, sentence: str) -> str:
    """The text the reader scores: the same as the candidate's ``context``."""
    return f"{section}: {sentence}" if section else sentence


def is_target(candidate: Candidate, target: str) -> bool:
    """Whether ``candidate`` is the target sentence (whole, or cut by a chunk edge)."""
    key, own = quote_key(target), quote_key(candidate.context)
    return key in own or (overlap(candidate.shown, target) >= 0.9 and overlap(target, candidate.shown) >= 0.6)


def mine(
    rows: Iterable[dict[str, Any]],
    retrieve: Callable[[str], Sequence[Passage]],
    base_scores: Callable[[str, Sequence[Candidate], int], np.ndarray],
    sections: dict[str, str],
    *,
    seed: int = 0,
) -> list[Example]:
    """Examples for each written question: its target, then its mined negatives."""
    rng = random.Random(seed)
    examples: list[Example] = []
    for row in rows:
        question, target = row.get("question"), row["sentence"]
        if not question:
            continue
        passages = retrieve(question)
        found = candidates(passages)
        scores = base_scores(question, found, len(passages)) if found else np.zeros(0)
        group = row["key"]
        examples.append(Example(question, reader_text(sections.get(row["chunk_id"], ""), target), 1.0, group))
        others = [
            (float(s), c) for s, c in zip(scores, found, strict=True)
            if not is_target(c, target) and overlap(target, c.shown) < RESTATES
        ]
        others.sort(key=lambda pair: -pair[0])
        hard = [c for _, c in others[:HARD_NEGATIVES]]
        rest = [c for _, c in others[HARD_NEGATIVES:]]
        easy = rng.sample(rest, min(EASY_NEGATIVES, len(rest)))
        examples.extend(Example(question, c.context, 0.0, group) for c in hard + easy)
    return examples
