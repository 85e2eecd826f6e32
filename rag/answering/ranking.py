"""The sentence ranker: which candidate sentences state the answer, learned from questions.

The extractive answerer's base score (0.7 x embedding similarity + 0.3 x word overlap) puts the
sentence holding the key facts among its top 3 for only 0.58-0.70 of answerable questions,
although it is among the candidates for 0.80-0.95 (issue 15). What it misses is in signals it
ignores: how the sentence alone (without its section path) matches, how its passage ranked,
whether it holds the kind of thing asked for (a number for "how many", a year for "when", a name
for "who"). The ranker is a linear model over those few features, each standardised, trained
listwise (one softmax over a question's candidates) by ``evals/train_ranker.py`` on the eval
sets' key facts. Fifteen weights generalise where rules fitted to questions do not; the
training script reports how it does on each set it was not trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.retrieval import Passage
from rag.text import content_tokens


class Candidate(Protocol):
    """What the features read of a candidate sentence (``rag.answering.extractive.Candidate``)."""

    @property
    def n(self) -> int: ...  # its passage's number
    @property
    def shown(self) -> str: ...
    @property
    def context(self) -> str: ...


FEATURES = (
    "dense",  # cosine of the sentence (with its section path) and the question
    "dense_shown",  # cosine of the sentence as shown (no section path) and the question
    "overlap",  # share of the question's content words in the sentence and its section path
    "dense_gap",  # "dense" minus the best "dense" among the candidates
    "passage_rank",  # 1 / the rank of its passage
    "passage_similarity",  # its passage's cosine with the question
    "passage_gap",  # that minus the best passage's
    "named",  # its passage is from a document the question points at
    "top_document",  # its passage is from the best passage's document
    "number_for_how_many",  # a "how many/much" question and the sentence holds a digit
    "year_for_when",  # a "when/what year" question and the sentence holds a year
    "name_for_who",  # a "who" question and the sentence names something the question does not
    "name_for_which",  # a "which/what organisation" question and the same
    "has_number",
    "has_new_name",
)

_HOW_MANY = re.compile(
    r"\bhow (?:many|much|large|big|long|far|old)\b|\bwhat (?:percentage|share|proportion|amount"
    r"|number|fraction)\b|\bwhat is the (?:total|maximum|minimum)\b"
)
_WHEN = re.compile(r"\bwhen\b|\b(?:what|which|in what) year\b|\bwhat date\b")
_WHO = re.compile(r"\bwho(?:m|se)?\b")
_WHICH = re.compile(
    r"\bwhich\b|\bwhat (?:organization|organisation|country|countries|body|agency|group|law|statute|act)\b"
)
_DIGIT = re.compile(r"\d")
_YEAR = re.compile(r"\b(?:1[89]\d\d|20\d\d)\b")
_CAPITALISED = re.compile(r"\b[A-Z][a-zA-Z\-]+")

DEFAULT_WEIGHTS = "sentence_ranker.json"


def sentence_features(
    question: str,
    found: Sequence[Candidate],
    passages: Sequence[Passage],
    dense: np.ndarray,
    dense_shown: np.ndarray,
) -> np.ndarray:
    """One row of ``FEATURES`` per candidate; ``dense``/``dense_shown`` are its cosines with the
    question, embedded with and without its section path."""
    if not found:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    lowered = question.lower()
    how_many, when = bool(_HOW_MANY.search(lowered)), bool(_WHEN.search(lowered))
    who, which = bool(_WHO.search(lowered)), bool(_WHICH.search(lowered))
    q_tokens = set(content_tokens(question))
    q_names = {w.lower() for w in _CAPITALISED.findall(question)}
    similarities = [p.similarity for p in passages]
    best_similarity = max(similarities)
    top_source = passages[0].source
    best_dense = float(dense.max())
    rows = []
    for i, c in enumerate(found):
        p = passages[c.n - 1]
        words = set(content_tokens(c.context))
        # The first character is skipped: a sentence's first word is capitalised anyway.
        new_name = any(w.lower() not in q_names for w in _CAPITALISED.findall(c.shown[1:]))
        has_number = bool(_DIGIT.search(c.shown))
        rows.append(
            [
                dense[i],
                dense_shown[i],
                len(q_tokens & words) / len(q_tokens) if q_tokens else 0.0,
                dense[i] - best_dense,
                1.0 / c.n,
                p.similarity,
                p.similarity - best_similarity,
                float(p.named),
                float(p.source == top_source),
                float(how_many and has_number),
                float(when and bool(_YEAR.search(c.shown))),
                float(who and new_name),
                float(which and new_name),
                float(has_number),
                float(new_name),
            ]
        )
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class SentenceRanker:
    """A linear model over standardised ``FEATURES``: higher scores rank first."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    trained_on: str = ""

    def score(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0)
        return np.asarray(((features - self.mean) / self.scale) @ self.weights)

    def to_json(self) -> dict[str, object]:
        return {
            "features": list(FEATURES),
            "mean": [float(x) for x in self.mean],
            "scale": [float(x) for x in self.scale],
            "weights": [float(x) for x in self.weights],
            "trained_on": self.trained_on,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SentenceRanker:
        # Weights saved for another feature list would silently score the wrong columns.
        if data.get("features") != list(FEATURES):
            raise ValueError("the sentence ranker's weights were trained on other features; retrain them")
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float32),
            scale=np.asarray(data["scale"], dtype=np.float32),
            weights=np.asarray(data["weights"], dtype=np.float32),
            trained_on=str(data.get("trained_on", "")),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> SentenceRanker:
        """The weights at ``path``, or the ones that ship with the package."""
        if path is None:
            text = resources.files("rag.answering").joinpath(DEFAULT_WEIGHTS).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return cls.from_json(json.loads(text))
