"""The answering API: condense -> retrieve -> number sources -> answer -> check citations.

This is the one entry point front ends use (web chat, Slack, CLI, evals)::

    assistant = Assistant(chain=build_chain(retriever=..., answerer=..., settings=...))
    answer = assistant.ask("What policy does the author call an immense failure?")
    answer.to_dict()   # the JSON of `rag ask --json`

``Assistant.stream`` yields ``Delta`` pieces of text as they are produced, then the final
``Answer`` with validated citations.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from rag.answering import prompts
from rag.answering.citations import (
    Sentence,
    best_quote,
    clean_markers,
    content_tokens,
    is_quoted,
    markers_in,
    overlap,
    split_sentences,
    strip_markers,
)
from rag.answering.extractive import Answerer, AnswererError, Turn
from rag.config import Settings
from rag.retrieval import Passage, fuse_passages


class QuestionError(ValueError):
    """The question cannot be answered as asked (empty, too long); the message says why."""


class Retriever(Protocol):
    def retrieve(
        self, query: str, k: int | None = None, sources: Sequence[str] | None = None
    ) -> list[Passage]: ...


# Judges whether a claim is supported by the passages it cites (None: cannot tell).
Verifier = Callable[[str, Sequence[Passage]], bool | None]


@dataclass
class Delta:
    """A piece of answer text, as it streams."""

    text: str


@dataclass
class Citation:
    n: int
    passage: Passage
    quote: str

    def as_dict(self) -> dict[str, Any]:
        p = self.passage
        return {
            "n": self.n,
            "source": p.source,
            "title": p.title,
            "section": p.section,
            "url": p.url,
            "chunk_id": p.chunk_id,
            "text": p.text,
            "quote": self.quote,
            "score": round(p.similarity, 4),
        }


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    retrieved: list[Passage]
    mode: str
    standalone_question: str = ""
    sentences: list[Sentence] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.as_dict() for c in self.citations],
            "retrieved": [
                {"source": p.source, "chunk_id": p.chunk_id, "score": round(p.similarity, 4), "text": p.text}
                for p in self.retrieved
            ],
            "mode": self.mode,
            "standalone_question": self.standalone_question,
            "sentences": [s.as_dict() for s in self.sentences],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "note": self.note,
        }


FOLLOWUP_HINT = re.compile(
    r"\b(it|its|it's|they|them|their|he|him|his|she|her|this|that|these|those|there|the author"
    r"|the article|the same|what about|and|also|then)\b",
    re.IGNORECASE,
)


# "the island shelling": a definite description, which names something already mentioned.
DEFINITE = re.compile(r"\bthe\s+((?:[\w-]+\s+){0,2}[\w-]+)", re.IGNORECASE)


def heuristic_condense(question: str, history: Sequence[Turn]) -> str:
    """Standalone question without an LLM: a follow-up borrows the subject of the previous user
    question. A follow-up is short, leads with a pronoun or "and", or refers with "the ..." to
    something the last answer brought up.

    >>> heuristic_condense("Who wrote it?", [{"role": "user", "content": "What is strategic patience?"}])
    'What is strategic patience? Who wrote it?'
    """
    previous = [t["content"] for t in history if t.get("role") == "user" and t.get("content")]
    if not previous:
        return question
    short = len(content_tokens(question)) <= 4
    if short or FOLLOWUP_HINT.search(question) or _refers_back(question, history):
        return f"{previous[-1].strip()} {question}"
    return question


def _refers_back(question: str, history: Sequence[Turn]) -> bool:
    """True when a "the ..." phrase of the question uses a word the last answer introduced (one
    its question did not use): "How many died in the island shelling?" after an answer listing
    "the shelling of Yeonpyeong Island". Words the user had already used do not count, so "the
    North Korean economy" after a question about North Korea is not taken for a follow-up.

    >>> turns = [{"role": "user", "content": "Which attacks are listed?"},
    ...          {"role": "assistant", "content": "The shelling of Yeonpyeong Island in 2010."}]
    >>> _refers_back("How many people died in the island shelling?", turns)
    True
    >>> _refers_back("Which attacks does the 2016 law list?", turns)
    False
    """
    asked = next((t["content"] for t in reversed(history) if t.get("role") == "user"), "")
    answered = next((t["content"] for t in reversed(history) if t.get("role") == "assistant"), "")
    introduced = {_plain(w) for w in content_tokens(answered) if len(w) > 3} - {
        _plain(w) for w in content_tokens(asked)
    }
    described = (w for match in DEFINITE.finditer(question) for w in content_tokens(match.group(1)))
    return any(_plain(w) in introduced for w in described)


def _plain(word: str) -> str:
    """A word without a plural -s, so "attacks" meets "attack"."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def llm_condense(model: Any) -> Callable[[str, Sequence[Turn]], str]:
    """Condense with a chat model (falls back to the heuristic if the model fails)."""

    def condense(question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        text = "\n".join(f"{t['role']}: {t['content']}" for t in history[-6:])
        try:
            reply = model.invoke(prompts.load("condense").format(history=text, question=question))
            out = str(getattr(reply, "content", reply)).strip().splitlines()
        except Exception:  # noqa: BLE001 - condensing is an optimisation, never a failure
            return heuristic_condense(question, history)
        return out[0].strip() if out and out[0].strip() else heuristic_condense(question, history)

    return condense


def check_question(question: str, max_chars: int) -> str:
    """Normalise a question or raise ``QuestionError`` with a message for users."""
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    # Control characters (other than line breaks and tabs) and lone surrogates carry no meaning.
    cleaned = "".join(
        ch for ch in question if (ch.isprintable() or ch in "\n\t") and not 0xD800 <= ord(ch) <= 0xDFFF
    ).strip()
    if not cleaned:
        raise QuestionError("Please type a question.")
    if len(cleaned) > max_chars:
        raise QuestionError(
            f"That question is {len(cleaned):,} characters long; the limit is {max_chars:,}."
            " Please shorten it."
        )
    return cleaned


def verify_by_match(claim: str, passages: Sequence[Passage]) -> bool | None:
    """Exact support check: the claim is quoted from, or nearly all its words are in, a passage."""
    if not passages:
        return False
    if any(is_quoted(claim, p.text) for p in passages):
        return True
    return max(overlap(claim, p.title + " " + p.section + " " + p.text) for p in passages) >= 0.9 or None


def clean_history(turns: Any, max_turns: int) -> list[Turn]:
    """The last ``max_turns`` exchanges of ``turns`` as ``{"role", "content"}`` dicts (assistant
    turns keep the ``sources`` they cited); anything else in the list is dropped.

    >>> clean_history([{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}, 3], 2)
    [{'role': 'user', 'content': 'Hi'}]
    """
    history: list[Turn] = []
    for t in turns or []:
        if isinstance(t, dict) and t.get("role") in ("user", "assistant") and t.get("content"):
            turn: dict[str, Any] = {"role": str(t["role"]), "content": str(t["content"])}
            if t["role"] == "assistant" and isinstance(t.get("sources"), list):
                # Front ends that know which files an answer cited pass them on, so a
                # follow-up can search those documents first.
                turn["sources"] = [str(x) for x in t["sources"]]
            history.append(turn)
    return history[-2 * max_turns :] if max_turns else []


def turn_passages(
    retriever: Retriever,
    question: str,
    standalone: str,
    history: Sequence[Turn],
    settings: Settings,
    k: int | None = None,
) -> tuple[list[Passage], bool]:
    """The passages for one turn, best first, and whether the turn is a follow-up.

    The first ``top_k`` are what the answerer is given. Asked for more (``k``: the eval scores the
    top 10), the standalone question's next passages follow them, so the eval measures what users get.
    """
    top_k = settings.top_k
    depth = max(k or top_k, top_k)
    ranked = retriever.retrieve(standalone, k=depth)
    previous = [t["content"] for t in history if t["role"] == "user"]
    if not previous or standalone == question:
        return ranked, False
    # A follow-up ("Who wrote it?") is mostly about the documents the conversation was about:
    # search the question as asked inside them too, and fuse the two rankings.
    cited = [t.get("sources") for t in history if t["role"] == "assistant"]
    topic = list(cited[-1] or []) if cited and cited[-1] else []
    if not topic:
        topic = list(dict.fromkeys(p.source for p in retriever.retrieve(previous[-1])))[:3]
    focused = retriever.retrieve(question, sources=topic)
    top = fuse_passages([ranked[:top_k], focused], settings.rrf_k)[:top_k]
    shown = {p.chunk_id for p in top}
    return top + [p for p in ranked if p.chunk_id not in shown][: depth - top_k], True


def build_chain(
    *,
    retriever: Retriever,
    answerer: Answerer,
    settings: Settings,
    condense: Callable[[str, Sequence[Turn]], str] | None = None,
    verifier: Verifier | None = None,
    fallback: Answerer | None = None,
) -> Runnable[dict[str, Any], Delta | Answer]:
    """Build the LCEL chain. Input: ``{"question": str, "history": [...]}``.

    Streaming the chain yields ``Delta`` items then one ``Answer``. ``verifier`` judges claims
    (defaults to exact matching); ``fallback`` answers when ``answerer`` fails or produces no
    supported sentence (the extractive answerer, typically).
    """
    condense_fn = condense or heuristic_condense
    verify = verifier or verify_by_match
    refusal = prompts.refusal()

    def prepare(inputs: dict[str, Any]) -> dict[str, Any]:
        state = dict(inputs)
        state["t0"] = time.perf_counter()
        state["question"] = check_question(inputs.get("question", ""), settings.max_question_chars)
        state["history"] = clean_history(inputs.get("history"), settings.max_history_turns)
        standalone = state["question"]
        if settings.condense and state["history"]:
            standalone = condense_fn(state["question"], state["history"])
        state["standalone"] = standalone
        state["t_condense"] = time.perf_counter()
        return state

    def retrieve(state: dict[str, Any]) -> dict[str, Any]:
        passages, followup = turn_passages(
            retriever, state["question"], state["standalone"], state["history"], settings
        )
        if followup:
            # "Who wrote it?" is far from any passage in cosine terms; the conversation already
            # established the topic, so the answerer (not the relevance threshold) decides.
            state["followup"] = True
        state["passages"] = passages
        state["t_retrieve"] = time.perf_counter()
        return state

    def answer(states: Iterator[dict[str, Any]]) -> Iterator[Delta | Answer]:
        for state in states:
            yield from _answer(state)

    def _answer(state: dict[str, Any]) -> Iterator[Delta | Answer]:
        passages: list[Passage] = state["passages"]
        best = max((p.similarity for p in passages), default=-1.0)
        mode = answerer.name
        text = ""
        note = None
        first_token: float | None = None
        # A follow-up, or a question that points at a document ("according to the article"), has
        # its topic settled: the answerer, not the relevance threshold, decides.
        settled = state.get("followup") or any(p.named for p in passages)
        if best < settings.min_relevance and not settled:
            text = refusal
            yield Delta(text)
        else:
            pieces: list[str] = []
            try:
                for piece in answerer.stream(state["question"], passages, state["history"]):
                    if first_token is None:
                        first_token = time.perf_counter()
                    pieces.append(piece)
                    yield Delta(piece)
            except AnswererError as exc:
                if fallback is None:
                    raise
                note = f"{exc}; showing the extractive answer instead"
                pieces = list(fallback.stream(state["question"], passages, state["history"]))
                mode = fallback.name
                yield Delta("\n\n" + "".join(pieces))
            text = "".join(pieces).strip()
        result = _cite(state, text, passages, mode)
        if (
            fallback is not None
            and mode != fallback.name
            and not result.refused
            and not any(s.supported for s in result.sentences)
        ):
            # A generated answer none of whose sentences holds up is worse than a quoted one.
            text = "".join(fallback.stream(state["question"], passages, state["history"])).strip()
            result = _cite(state, text, passages, fallback.name)
            result.note = "the generated answer was not supported by its sources; showing quotes instead"
        result.note = result.note or note
        end = time.perf_counter()
        result.timings_ms = {
            "condense": (state["t_condense"] - state["t0"]) * 1000,
            "retrieve": (state["t_retrieve"] - state["t_condense"]) * 1000,
            "answer": (end - state["t_retrieve"]) * 1000,
            "first_token": ((first_token or end) - state["t0"]) * 1000,
            "total": (end - state["t0"]) * 1000,
        }
        yield result

    def _cite(state: dict[str, Any], text: str, passages: list[Passage], mode: str) -> Answer:
        base = Answer(
            question=state["question"],
            answer=text,
            refused=False,
            citations=[],
            retrieved=passages,
            mode=mode,
            standalone_question=state["standalone"],
        )
        if not text or _is_refusal(text, refusal):
            base.answer, base.refused = refusal, True
            return base
        valid = set(range(1, len(passages) + 1))
        cleaned = clean_markers(text, valid)
        sentences: list[Sentence] = []
        kept: list[str] = []
        for raw in split_sentences(cleaned):
            cited = markers_in(raw)
            claim = strip_markers(raw)
            if not claim:
                continue
            supported = verify(claim, [passages[n - 1] for n in cited]) if cited else False
            if supported is None:
                supported = False
            sentence = Sentence(raw, cited, supported)
            if settings.drop_unsupported and not supported:
                continue
            sentences.append(sentence)
            kept.append(raw)
        order: list[int] = []
        for s in sentences:
            order += [n for n in s.citations if n not in order]
        quotes: dict[int, str] = {}
        for n in order:
            claims = " ".join(strip_markers(s.text) for s in sentences if n in s.citations)
            quotes[n] = best_quote(claims, passages[n - 1].text)
        base.answer = " ".join(kept) if settings.drop_unsupported else cleaned.strip()
        base.sentences = sentences
        base.citations = [Citation(n, passages[n - 1], quotes[n]) for n in order]
        if not base.answer:
            base.answer, base.refused = refusal, True
            base.citations, base.sentences = [], []
        return base

    chain = (
        RunnableLambda(prepare).with_config(run_name="condense")
        | RunnableLambda(retrieve).with_config(run_name="retrieve")
        | RunnableGenerator(answer).with_config(run_name="answer_and_cite")
    )
    return chain


def _is_refusal(text: str, refusal: str) -> bool:
    norm = " ".join(strip_markers(text).lower().split())
    return norm.startswith(refusal.lower().rstrip(".")) or norm.rstrip(".") == refusal.lower().rstrip(".")


class Assistant:
    """Front ends talk to this: ``ask`` for a whole answer, ``stream`` for deltas then the answer."""

    def __init__(
        self, chain: Runnable[dict[str, Any], Delta | Answer], *, status: dict[str, Any] | None = None
    ) -> None:
        self.chain = chain
        self.status = status or {}

    def stream(self, question: str, history: Sequence[Turn] | None = None) -> Iterator[Delta | Answer]:
        yield from self.chain.stream({"question": question, "history": list(history or [])})

    def ask(self, question: str, history: Sequence[Turn] | None = None) -> Answer:
        for event in self.stream(question, history):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the chain produced no answer")  # pragma: no cover - chain invariant
