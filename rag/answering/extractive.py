"""The extractive answerer: answers with the passage sentences that best answer the question.

It needs no LLM: every sentence of its answer is quoted from a passage, with that passage's
``[n]``, so it cannot state what the documents do not say.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from rag.answering import prompts
from rag.answering.answer_types import asked_for, gives, pinned_years, years_in
from rag.answering.recent import RecentTurns
from rag.answering.types import Turn
from rag.retrieval import Passage
from rag.text import CARD_SECTION, content_tokens, plain_brackets, quote_key, split_sentences

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from rag.answering.ranking import SentenceRanker
    from rag.answering.reader import SentenceReader


# With ``answer_types``, a sentence of the kind asked for is looked for among this many of the
# best-ranked candidates when the picks have none.
TYPED_DEPTH = 10

# A list item's marker: a bullet and a space, or a number ("28. Russia (suspended)"). Quoted with
# it, the number's full stop would end a sentence of its own, "Full members: 28.", which cites
# nothing. A sign or emphasis is no marker: "-0.4% of GDP" is a deficit, "**KEDO**" a name.
LIST_MARKER = re.compile(r"^(?:(?:[-*•]\s+)+(?:\d{1,3}[.)]\s+)?|\d{1,3}[.)]\s+)")

BACK_REFERENCE = re.compile(
    r"^(?:it|its|they|their|them|this|these|those|he|she|his|her|such)\b", re.IGNORECASE
)


class Candidate(NamedTuple):
    """A sentence the extractive answerer may quote."""

    n: int  # its passage's number
    shown: str  # as quoted (a bare list item gets its heading)
    context: str  # as embedded and matched: with its section path
    before: str | None  # the sentence before it, when it opens by referring back to it


def quoted(picked: Sequence[tuple[int, str]]) -> Iterator[str]:
    """The answer text of ``(passage number, sentence)`` picks: each sentence with its ``[n]``."""
    for i, (n, sentence) in enumerate(picked):
        yield ("" if i == 0 else " ") + f"{sentence} [{n}]"


# What the answerer picked (passage number, sentence) and, when it picked nothing, why (or None).
Selection = tuple[list[tuple[int, str]], str | None]


class ExtractiveAnswerer:
    """Answers with the passage sentences closest to the question, each with its ``[n]``.

    A sentence's score mixes its embedding similarity to the question (the sentence is embedded
    with its document title and section, so "- total: 1,607 km" knows it is about land
    boundaries) with the share of the question's content words it contains. With a ``reader``
    (the cross-encoder ``rag tune`` trains on this corpus) its probability that the sentence
    states the answer is added, ``reader_weight`` times, and when no sentence reaches
    ``reader_min`` the answer is the refusal: the passages are on the topic, but none says it.
    Further sentences are quoted while they score at least ``pick_ratio`` of the best.

    With a ``ranker`` (``rag.answering.ranking``, on by default) the base score only decides
    whether anything is close enough to quote (``min_score``); the ranker orders the sentences
    and the best ``max_sentences`` are quoted: on the eval sets the sentence holding the key facts
    is often the second or third, so always quoting three was right more often than stopping
    early (docs/quality.md).

    When every quoted sentence comes from one document, the best sentence of another document is
    quoted too if it ranks within ``other_document_within``: a question that compares two
    documents ("the 2012 and the 2016 edition", "Japan and South Korea") otherwise gets three
    sentences of whichever document ranked first (docs/quality.md).

    With ``answer_types`` (``rag.answering.answer_types``) a question asking for a date, an amount
    of money or a count gets a sentence that gives one, and a question naming a year gets quotes
    from passages that name it; else the answer is the refusal, and ``why_refused`` says what
    the passages lack.
    """

    name = "extractive"

    def __init__(
        self,
        embeddings: Embeddings,
        *,
        max_sentences: int = 3,
        min_score: float = 0.2,
        pick_ratio: float = 0.85,
        reader: SentenceReader | None = None,
        reader_weight: float = 0.0,
        reader_min: float = 0.0,
        ranker: SentenceRanker | None = None,
        other_document_within: int = 0,
        answer_types: bool = False,
    ) -> None:
        self.embeddings = embeddings
        self.max_sentences = max_sentences
        self.min_score = min_score
        self.pick_ratio = pick_ratio
        self.reader = reader
        self.reader_weight = reader_weight
        self.reader_min = reader_min
        self.ranker = ranker
        self.other_document_within = other_document_within
        self.answer_types = answer_types
        # ``why_refused`` comes right after the refusal: the selection is not worked out twice.
        self._recent: RecentTurns[Selection] = RecentTurns()

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        picked = self.select(question, passages)
        if not picked:
            yield prompts.refusal()
            return
        yield from quoted(picked)

    def select(self, question: str, passages: Sequence[Passage]) -> list[tuple[int, str]]:
        """The ``(passage number, sentence)`` pairs of the answer; empty means refuse."""
        return self._choose(question, passages)[0]

    def why_refused(self, question: str, passages: Sequence[Passage]) -> str | None:
        """Why ``select`` refuses, when the passages are close but lack the kind of thing asked
        for ("none of the closest passages gives a date"); None otherwise (the answer's note)."""
        return self._choose(question, passages)[1]

    def _choose(self, question: str, passages: Sequence[Passage]) -> Selection:
        found = self._recent.get(question, passages)
        if found is None:
            found = self._select(question, passages)
            self._recent.put(question, passages, found)
        return list(found[0]), found[1]

    def _select(self, question: str, passages: Sequence[Passage]) -> Selection:
        candidates, scores, read, ranked = self._score(question, passages)
        if not candidates:
            return [], None
        if read is not None and float(read.max()) < self.reader_min:
            return [], None
        if float(scores.max()) < self.min_score:
            return [], None
        # With a ranker its order decides and the best max_sentences are quoted; without one,
        # further sentences only while their base score is pick_ratio of the best.
        order = np.argsort(-(scores if ranked is None else ranked))
        floor = -np.inf if ranked is not None else float(scores[order[0]]) * self.pick_ratio
        picked: list[tuple[int, str]] = []

        def new(text: str) -> bool:
            return all(text not in shown and shown not in text for _, shown in picked)

        def pick(c: Candidate) -> None:
            # "It was halted in 2006." says nothing without the sentence that names "it"; that
            # sentence comes with it, on top of the picks.
            if c.before and new(c.before):
                picked.append((c.n, c.before))
            if new(c.shown):
                picked.append((c.n, c.shown))

        chosen: list[int] = []
        for count, idx in enumerate(order[: self.max_sentences * 3]):
            if count >= self.max_sentences or scores[idx] < floor:
                break
            chosen.append(int(idx))
            pick(candidates[int(idx)])
        documents = {passages[candidates[i].n - 1].source for i in chosen}
        if len(documents) == 1:
            for idx in order[: self.other_document_within]:
                c = candidates[int(idx)]
                if passages[c.n - 1].source not in documents:
                    pick(c)
                    break
        kind = asked_for(question) if self.answer_types else None
        if kind is not None and not any(gives(kind, text, question) for _, text in picked):
            # "How many ... defectors", and no pick has a number beside "defectors": quote the
            # best-ranked candidate that has one, or refuse when none does (the passages are on
            # the topic but do not give the detail: rag/answering/answer_types.py).
            typed = [candidates[int(i)] for i in order[:TYPED_DEPTH]]
            found = next((c for c in typed if gives(kind, c.shown, question)), None)
            if found is None:
                return [], f"none of the closest passages gives {_WANTED[kind.kind]}"
            pick(found)
        years = pinned_years(question) if self.answer_types else set()
        if years and not any(years & _years_of(passages[n - 1]) for n in {n for n, _ in picked}):
            # "What was the vote on Resolution 2270 in 2016?" quoted from passages that never
            # mention 2016 (in their text, document title, section or publication) is about
            # another time.
            return [], "the closest passages do not mention " + " or ".join(sorted(years))
        return picked, None

    def best_score(self, question: str, passages: Sequence[Passage]) -> float:
        """The score of the best sentence (what ``min_score`` is compared with)."""
        _, scores, _, _ = self._score(question, passages)
        return float(scores.max()) if len(scores) else -1.0

    def _score(
        self, question: str, passages: Sequence[Passage]
    ) -> tuple[list[Candidate], np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The candidates, their base scores, the reader's probabilities (None without one) and
        the ranker's scores (None without one)."""
        found = candidates(passages)
        if not found:
            return found, np.zeros(0), None, None
        dense, features = self._embedded(question, found, passages, ranked=self.ranker is not None)
        scores = self._combine(question, found, dense, len(passages))
        ranked = self.ranker.score(features) if self.ranker is not None and features is not None else None
        if self.reader is None:
            return found, scores, None, ranked
        read = self.reader.score(question, [c.context for c in found])
        return found, scores + self.reader_weight * read, read, ranked

    def features(self, question: str, passages: Sequence[Passage]) -> tuple[list[Candidate], np.ndarray]:
        """The candidates and the ranker's features of each (what evals/train_ranker.py learns from)."""
        from rag.answering.ranking import FEATURES

        found = candidates(passages)
        if not found:
            return found, np.zeros((0, len(FEATURES)), dtype=np.float32)
        _, features = self._embedded(question, found, passages, ranked=True)
        assert features is not None
        return found, features

    def _embedded(
        self, question: str, found: Sequence[Candidate], passages: Sequence[Passage], *, ranked: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Each candidate's cosine with the question and, when ``ranked``, the ranker's features:
        one embedding pass over the sentences with their section paths (and as shown)."""
        n = len(found)
        texts = [c.context for c in found] + ([c.shown for c in found] if ranked else [])
        dense = self._cosines(question, texts)
        if not ranked:
            return dense, None
        from rag.answering.ranking import sentence_features

        return dense[:n], sentence_features(question, found, passages, dense[:n], dense[n:])

    def _cosines(self, question: str, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
        qvec = np.asarray(self.embeddings.embed_query(question), dtype=np.float32)
        return np.asarray(
            vectors @ qvec / (np.linalg.norm(vectors, axis=1) * (np.linalg.norm(qvec) or 1.0) + 1e-9)
        )

    def scores(self, question: str, found: Sequence[Candidate], passages: int) -> np.ndarray:
        """The base score of each candidate: embedding similarity, word overlap, rank prior."""
        if not found:
            return np.zeros(0)
        return self._combine(question, found, self._cosines(question, [c.context for c in found]), passages)

    def _combine(
        self, question: str, found: Sequence[Candidate], dense: np.ndarray, passages: int
    ) -> np.ndarray:
        q_tokens = set(content_tokens(question))
        lexical = np.array(
            [
                len(q_tokens & set(content_tokens(c.context))) / len(q_tokens) if q_tokens else 0.0
                for c in found
            ]
        )
        # Earlier passages were ranked higher by retrieval; a small prior keeps ties in that order.
        rank_prior = np.array([0.02 * (passages - c.n) / max(passages, 1) for c in found])
        return np.asarray(0.7 * dense + 0.3 * lexical + rank_prior)


def _years_of(passage: Passage) -> set[str]:
    """The years a passage names, its document's title, section, publication and front-matter
    dates and notes included ("the 2016 CIA World Factbook" is about 2016 in every passage)."""
    meta = " ".join((passage.title, passage.source, passage.section, passage.publication, passage.about))
    return years_in(f"{passage.text} {meta}")


# What a refusal's note says the passages lack, by the kind asked for.
_WANTED = {"date": "a date", "money": "an amount of money", "count": "that number"}


def candidates(passages: Sequence[Passage]) -> list[Candidate]:
    """The sentences of ``passages`` an answer may quote, each once, in passage order."""
    found: list[Candidate] = []
    seen: list[str] = []
    for n, p in enumerate(passages, start=1):
        # The section path (not the title, which would pull every sentence of a document
        # toward the same topic) tells a sentence what it is about.
        context = p.section
        label = p.section.rsplit(" > ", 1)[-1] if p.section != CARD_SECTION else ""
        # A document's own "[82]" is not a citation: quoted as "(82)", it stays in its sentence.
        sentences = split_sentences(plain_brackets(p.text))
        for i, sentence in enumerate(sentences):
            key = quote_key(sentence)
            # Overlapping chunks cut the same sentence at different points: a sentence
            # already offered whole (or in part) is not offered again.
            if len(content_tokens(sentence)) < 2 or any(key in k or k in key for k in seen):
                continue
            seen.append(key)
            marker = LIST_MARKER.match(sentence)
            shown = sentence[marker.end() :].strip() if marker else sentence.strip()
            # A bare list item ("- total: 1,607 km") means nothing without its heading.
            if label and (marker or len(content_tokens(shown)) < 5):
                shown = f"{label}: {shown}"
            before = sentences[i - 1] if i and BACK_REFERENCE.match(shown) else None
            found.append(
                Candidate(
                    n,
                    shown,
                    f"{context}: {sentence}" if context else sentence,
                    before if before and len(content_tokens(before)) >= 2 else None,
                )
            )
    return found
