"""Answerers: turn a question and numbered passages into an answer with ``[n]`` markers.

All answerers share one interface (``stream`` yields text pieces). ``extractive`` needs no LLM:
it quotes the passage sentences that best answer the question. ``openai`` talks to any
OpenAI-compatible chat endpoint. ``llamacpp`` (``rag.answering.llamacpp``) runs a local GGUF model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.answering import prompts
from rag.answering.citations import content_tokens, normalise, split_sentences
from rag.config import Settings
from rag.retrieval import Passage
from rag.splitting import CARD_SECTION

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

# {"role": "user" | "assistant", "content": ..., optional "sources": [file names cited]}
Turn = dict[str, Any]


class AnswererError(Exception):
    """The answer backend failed (down, timed out, refused); the message is shown to users."""


class Answerer(Protocol):
    name: str

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        """Yield the answer in pieces; ``[n]`` refers to ``passages[n - 1]``."""
        ...


def format_passages(passages: Sequence[Passage]) -> str:
    blocks = []
    for n, p in enumerate(passages, start=1):
        where = " > ".join(x for x in (p.title, p.section) if x)
        blocks.append(f"[{n}] ({where})\n{p.text}")
    return "\n\n".join(blocks)


class ExtractiveAnswerer:
    """Answers with the passage sentences closest to the question, each with its ``[n]``.

    A sentence's score mixes its embedding similarity to the question (the sentence is embedded
    with its document title and section, so "- total: 1,607 km" knows it is about land
    boundaries) with the share of the question's content words it contains.
    """

    name = "extractive"

    def __init__(self, embeddings: Embeddings, *, max_sentences: int = 3, min_score: float = 0.2) -> None:
        self.embeddings = embeddings
        self.max_sentences = max_sentences
        self.min_score = min_score

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        picked = self.select(question, passages)
        if not picked:
            yield prompts.refusal()
            return
        for i, (n, sentence) in enumerate(picked):
            yield ("" if i == 0 else " ") + f"{sentence} [{n}]"

    def select(self, question: str, passages: Sequence[Passage]) -> list[tuple[int, str]]:
        """The ``(passage number, sentence)`` pairs of the answer; empty means refuse."""
        candidates, scores = self._score(question, passages)
        if not candidates:
            return []
        order = np.argsort(-scores)
        best = float(scores[order[0]])
        if best < self.min_score:
            return []
        picked: list[tuple[int, str]] = []
        for count, idx in enumerate(order[: self.max_sentences * 3]):
            if count >= self.max_sentences or scores[idx] < best * 0.85:
                break
            n, sentence, _ = candidates[int(idx)]
            before = _antecedent(sentence, passages[n - 1].text)
            # "It was halted in 2006." says nothing without the sentence that names "it"; that
            # sentence comes with it, on top of the picks.
            if before and all(before not in shown for _, shown in picked):
                picked.append((n, before))
            picked.append((n, sentence))
        return picked

    def best_score(self, question: str, passages: Sequence[Passage]) -> float:
        """The score of the best sentence (what ``min_score`` is compared with)."""
        _, scores = self._score(question, passages)
        return float(scores.max()) if len(scores) else -1.0

    def _score(
        self, question: str, passages: Sequence[Passage]
    ) -> tuple[list[tuple[int, str, str]], np.ndarray]:
        candidates: list[tuple[int, str, str]] = []
        seen: list[str] = []
        for n, p in enumerate(passages, start=1):
            # The section path (not the title, which would pull every sentence of a document
            # toward the same topic) tells a sentence what it is about.
            context = p.section
            label = p.section.rsplit(" > ", 1)[-1] if p.section != CARD_SECTION else ""
            for sentence in split_sentences(p.text):
                key = normalise(sentence)
                # Overlapping chunks cut the same sentence at different points: a sentence
                # already offered whole (or in part) is not offered again.
                if len(content_tokens(sentence)) < 2 or any(key in k or k in key for k in seen):
                    continue
                seen.append(key)
                shown = sentence.lstrip("-*• ").strip()
                # A bare list item ("- total: 1,607 km") means nothing without its heading.
                if label and (sentence[:1] in "-*•" or len(content_tokens(shown)) < 5):
                    shown = f"{label}: {shown}"
                candidates.append((n, shown, f"{context}: {sentence}" if context else sentence))
        if not candidates:
            return [], np.zeros(0)
        vectors = np.asarray(self.embeddings.embed_documents([c[2] for c in candidates]), dtype=np.float32)
        qvec = np.asarray(self.embeddings.embed_query(question), dtype=np.float32)
        dense = vectors @ qvec / (np.linalg.norm(vectors, axis=1) * (np.linalg.norm(qvec) or 1.0) + 1e-9)
        q_tokens = set(content_tokens(question))
        lexical = np.array(
            [
                len(q_tokens & set(content_tokens(c[2]))) / len(q_tokens) if q_tokens else 0.0
                for c in candidates
            ]
        )
        # Earlier passages were ranked higher by retrieval; a small prior keeps ties in that order.
        rank_prior = np.array([0.02 * (len(passages) - c[0]) / max(len(passages), 1) for c in candidates])
        return candidates, 0.7 * dense + 0.3 * lexical + rank_prior


BACK_REFERENCE = re.compile(
    r"^(?:it|its|they|their|them|this|these|those|he|she|his|her|such)\b", re.IGNORECASE
)


def _antecedent(sentence: str, passage: str) -> str | None:
    """The sentence before ``sentence`` in ``passage`` when ``sentence`` opens by referring back
    ("It was halted in 2006."), else None."""
    if not BACK_REFERENCE.match(sentence.lstrip("-*• ")):
        return None
    sentences = split_sentences(passage)
    for before, current in itertools.pairwise(sentences):
        if current == sentence or current.lstrip("-*• ").strip() == sentence:
            return before if len(content_tokens(before)) >= 2 else None
    return None


class ChatModelAnswerer:
    """Answers with any LangChain chat model, from the prompt files; streams its tokens."""

    def __init__(self, model: BaseChatModel, *, name: str = "openai", max_history_turns: int = 6) -> None:
        self.model = model
        self.name = name
        self.max_history_turns = max_history_turns

    def messages(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> list[Any]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        # The system prompt is identical for every question, so a server's prompt cache reuses it.
        out: list[Any] = [SystemMessage(prompts.load("answer_system").format(refusal=prompts.refusal()))]
        for turn in list(history)[-2 * self.max_history_turns :] if self.max_history_turns else []:
            cls = HumanMessage if turn.get("role") == "user" else AIMessage
            out.append(cls(str(turn.get("content", ""))))
        out.append(
            HumanMessage(
                prompts.load("answer_user").format(passages=format_passages(passages), question=question)
            )
        )
        return out

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        try:
            for chunk in self.model.stream(self.messages(question, passages, history)):
                text = chunk.content if isinstance(chunk.content, str) else ""
                if text:
                    yield text
        except AnswererError:
            raise
        except Exception as exc:
            raise AnswererError(
                f"the {self.name} answer backend failed: {type(exc).__name__}: {exc}"
            ) from exc


def build_openai_model(settings: Settings) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=settings.openai_api_key,
        timeout=settings.openai_timeout_s,
        max_retries=0,
        temperature=0,
        streaming=True,
    )


def build_answerer(settings: Settings, embeddings: Embeddings) -> Answerer:
    """The answerer the settings name, with its collaborators."""
    if settings.answerer == "openai":
        return ChatModelAnswerer(
            build_openai_model(settings), name="openai", max_history_turns=settings.max_history_turns
        )
    extractive = ExtractiveAnswerer(
        embeddings,
        max_sentences=settings.extractive_max_sentences,
        min_score=settings.extractive_min_score,
    )
    if settings.answerer == "llamacpp" and settings.llm_role == "judge":
        from rag.answering.judged import build_judged_answerer

        return build_judged_answerer(settings, extractive)
    if settings.answerer == "llamacpp":
        from rag.answering.llamacpp import build_llamacpp_answerer

        return build_llamacpp_answerer(settings)
    return extractive
