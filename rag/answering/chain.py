"""The chain: condense -> retrieve -> answer -> cite, one LCEL runnable built from its parts.

Front ends do not call it directly: ``Assistant`` (``rag.answering.assistant``) wraps it::

    chain = build_chain(retriever=retriever, answerer=answerer, settings=settings)
    for event in chain.stream({"question": "Who wrote it?", "history": [...]}):
        ...   # Delta pieces of text, then one Answer

Each step is a named function of a ``TurnState`` (the turn as it goes through the chain) and the
collaborators it needs, so each can be read, and tested, on its own. ``build_retrieval`` is the
chain's first two steps alone: the eval ranks through it when it does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from rag.answering import prompts
from rag.answering.citations import clean_markers, markers_in, strip_markers
from rag.answering.condense import Condenser, heuristic_condense
from rag.answering.questions import check_question, clean_history
from rag.answering.types import Answer, Answerer, AnswererError, Citation, Delta, Sentence, Turn
from rag.answering.verification import Verifier, verify_by_match
from rag.config import Settings
from rag.retrieval import Passage, fuse_passages
from rag.text import best_quote, split_claims

# The chain's retriever: ``HybridRetriever``, or any LangChain retriever whose documents carry
# ``Passage.to_document``'s metadata and that takes ``k``, ``sources`` and ``depth`` in ``invoke``.
Retriever = BaseRetriever


def ranked_passages(retriever: Retriever, query: str, k: int, **options: Any) -> list[Passage]:
    """The retriever's documents for ``query`` as ``Passage``s: the one place the answering layer
    turns the retriever's ``Document``s back into what it reads (``sources``, ``depth`` passed on)."""
    return [Passage.from_document(doc) for doc in retriever.invoke(query, k=k, **options)]


@dataclass
class TurnState:
    """One turn on its way through the chain; each step fills in its part.

    ``passages`` is the turn's ranking, ``depth`` deep when a depth was asked (the eval asks 10);
    ``shown`` its first ``top_k``, the passages the answerer is given.
    """

    question: str
    history: list[Turn]
    standalone: str
    started: float
    condensed: float  # perf_counter() readings, for Answer.timings_ms
    depth: int | None = None
    passages: list[Passage] = field(default_factory=list)
    shown: list[Passage] = field(default_factory=list)
    followup: bool = False
    retrieved: float = 0.0
    # Names in the question that no document mentions ("Natanz"): the turn is refused.
    unknown: list[str] = field(default_factory=list)


def turn_passages(
    retriever: Retriever,
    question: str,
    standalone: str,
    history: Sequence[Turn],
    settings: Settings,
    depth: int | None = None,
) -> tuple[list[Passage], bool]:
    """The passages for one turn, best first, and whether the turn is a follow-up.

    The first ``top_k`` are what the answerer is given. Asked for more (``depth``: the eval scores
    the top 10), the standalone question's next passages follow them, so the eval measures what
    users get.
    """
    top_k = settings.top_k
    depth = max(depth or top_k, top_k)
    ranked = ranked_passages(retriever, standalone, top_k, depth=depth)
    previous = [t["content"] for t in history if t["role"] == "user"]
    if not previous or standalone == question:
        return ranked, False
    # A follow-up ("Who wrote it?") is mostly about the documents the conversation was about:
    # search the question as asked inside them too, and fuse the two rankings.
    cited = [t.get("sources") for t in history if t["role"] == "assistant"]
    topic = list(cited[-1] or []) if cited and cited[-1] else []
    if not topic:
        topic = list(dict.fromkeys(p.source for p in ranked_passages(retriever, previous[-1], top_k)))[:3]
    focused = ranked_passages(retriever, question, top_k, sources=topic)
    top = fuse_passages([ranked[:top_k], focused], settings.rrf_k)[:top_k]
    shown = {p.chunk_id for p in top}
    return top + [p for p in ranked if p.chunk_id not in shown][: depth - top_k], True


# --- the steps ----------------------------------------------------------------------------------


def prepare(inputs: Mapping[str, Any], *, settings: Settings, condense: Condenser) -> TurnState:
    """Check the question, clean the history, and condense a follow-up into a standalone question.

    ``inputs``: ``question``, optional ``history`` and ``k`` (how deep to rank, at least top_k).
    """
    started = time.perf_counter()
    question = check_question(inputs.get("question", ""), settings.max_question_chars)
    history = clean_history(inputs.get("history"), settings.max_history_turns)
    depth = inputs.get("k")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        raise ValueError(f"k must be a positive whole number, not {depth!r}")
    standalone = condense(question, history) if settings.condense and history else question
    return TurnState(question, history, standalone, started, time.perf_counter(), depth=depth)


def retrieve(state: TurnState, *, retriever: Retriever, settings: Settings) -> TurnState:
    """Rank the passages of the turn (``turn_passages``); the first ``top_k`` are shown."""
    state.passages, state.followup = turn_passages(
        retriever, state.question, state.standalone, state.history, settings, depth=state.depth
    )
    state.shown = state.passages[: settings.top_k]
    # A retriever without a vocabulary (another LangChain retriever) has no ``unknown_names``.
    names = getattr(retriever, "unknown_names", None)
    if settings.refuse_unknown_names and names is not None:
        # The words the user typed: a condensed follow-up carries the earlier question, which was
        # checked when it was asked (and an LLM's rewrite may add names nobody typed).
        state.unknown = list(names(state.question))
    state.retrieved = time.perf_counter()
    return state


def answer(
    state: TurnState,
    *,
    answerer: Answerer,
    fallback: Answerer | None,
    verify: Verifier,
    settings: Settings,
) -> Iterator[Delta | Answer]:
    """Stream the answer to the turn, then yield it as an ``Answer`` with checked citations.

    Below the relevance threshold the answer is the refusal. ``fallback`` answers when
    ``answerer`` fails or none of its sentences holds up.
    """
    passages = state.shown
    refusal = prompts.refusal()
    best = max((p.similarity for p in passages), default=-1.0)
    mode = answerer.name
    text = ""
    note = None
    first_token: float | None = None
    # A follow-up ("Who wrote it?" is far from any passage in cosine terms), or a question that
    # points at a document ("according to the article"), has its topic settled: the answerer,
    # not the relevance threshold, decides.
    settled = state.followup or any(p.named for p in passages)
    # Refused before the answerer runs: a name no document mentions, or nothing close enough.
    gated = bool(state.unknown) or (best < settings.min_relevance and not settled)
    if gated:
        # A name no document mentions is refused even in a question about a named document:
        # "What does the article say about Natanz?" has no answer in an article without it.
        text = refusal
        if state.unknown:
            note = "the documents never mention " + ", ".join(f"“{name}”" for name in state.unknown)
        else:
            note = (
                f"no passage is close to the question (best match {max(best, 0.0):.2f}, "
                f"the threshold is {settings.min_relevance:.2f})"
            )
        yield Delta(text)
    else:
        pieces: list[str] = []
        try:
            for piece in answerer.stream(state.question, passages, state.history):
                if first_token is None:
                    first_token = time.perf_counter()
                pieces.append(piece)
                yield Delta(piece)
        except AnswererError as exc:
            if fallback is None:
                raise
            note = f"{exc}; showing the extractive answer instead"
            pieces = list(fallback.stream(state.question, passages, state.history))
            mode = fallback.name
            yield Delta("\n\n" + "".join(pieces))
        text = "".join(pieces).strip()
    result = cite(state, text, mode, verify=verify, settings=settings)
    if (
        fallback is not None
        and mode != fallback.name
        and not result.refused
        and not any(s.supported for s in result.sentences)
    ):
        # A generated answer none of whose sentences holds up is worse than a quoted one.
        text = "".join(fallback.stream(state.question, passages, state.history)).strip()
        result = cite(state, text, fallback.name, verify=verify, settings=settings)
        result.note = "the generated answer was not supported by its sources; showing quotes instead"
    if not gated and result.refused and note is None and mode == answerer.name:
        # The extractive answerer can say what the close passages lack ("none of the closest
        # passages gives a date"), as a note beside the plain refusal.
        why = getattr(answerer, "why_refused", None)
        note = why(state.question, passages) if why is not None else None
    result.note = result.note or note
    end = time.perf_counter()
    result.timings_ms = {
        "condense": (state.condensed - state.started) * 1000,
        "retrieve": (state.retrieved - state.condensed) * 1000,
        "answer": (end - state.retrieved) * 1000,
        "first_token": ((first_token or end) - state.started) * 1000,
        "total": (end - state.started) * 1000,
    }
    yield result


def cite(state: TurnState, text: str, mode: str, *, verify: Verifier, settings: Settings) -> Answer:
    """The ``Answer`` for ``text``: markers that point nowhere dropped, every sentence checked
    against the passages it cites, and each cited passage's best quote."""
    passages = state.shown
    refusal = prompts.refusal()
    base = Answer(
        question=state.question,
        answer=text,
        refused=False,
        citations=[],
        retrieved=state.passages,
        mode=mode,
        standalone_question=state.standalone,
    )
    if not text or _is_refusal(text, refusal):
        base.answer, base.refused = refusal, True
        return base
    valid = set(range(1, len(passages) + 1))
    cleaned = clean_markers(text, valid)
    sentences: list[Sentence] = []
    kept: list[str] = []
    for raw in split_claims(cleaned):
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
        # The quote shown for a passage is the sentence its first claim rests on: the answer's
        # lead, when several sentences cite one passage (a best match over all of them picked
        # whichever shared the most words, often the last).
        first = next(s for s in sentences if n in s.citations)
        quotes[n] = best_quote(strip_markers(first.text), passages[n - 1].text)
    base.answer = " ".join(kept) if settings.drop_unsupported else cleaned.strip()
    base.sentences = sentences
    base.citations = [Citation(n, passages[n - 1], quotes[n]) for n in order]
    if not base.answer:
        base.answer, base.refused = refusal, True
        base.citations, base.sentences = [], []
    return base


def _is_refusal(text: str, refusal: str) -> bool:
    norm = " ".join(strip_markers(text).lower().split())
    return norm.startswith(refusal.lower().rstrip(".")) or norm.rstrip(".") == refusal.lower().rstrip(".")


def _each(
    step: Callable[[TurnState], Iterator[Delta | Answer]], states: Iterator[TurnState]
) -> Iterator[Delta | Answer]:
    """``step`` over the stream of states (a ``RunnableGenerator`` takes and gives streams)."""
    for state in states:
        yield from step(state)


def build_retrieval(
    *, retriever: Retriever, settings: Settings, condense: Condenser | None = None
) -> Runnable[dict[str, Any], TurnState]:
    """The chain's first two steps: condense then retrieve. Input as ``build_chain``'s; output the
    ``TurnState`` the answer step would be given."""
    condense_step = RunnableLambda(
        partial(prepare, settings=settings, condense=condense or heuristic_condense)
    )
    retrieve_step = RunnableLambda(partial(retrieve, retriever=retriever, settings=settings))
    return condense_step.with_config(run_name="condense") | retrieve_step.with_config(run_name="retrieve")


def build_chain(
    *,
    retriever: Retriever,
    answerer: Answerer,
    settings: Settings,
    condense: Condenser | None = None,
    verifier: Verifier | None = None,
    fallback: Answerer | None = None,
) -> Runnable[dict[str, Any], Delta | Answer]:
    """Build the LCEL chain. Input: ``{"question": str, "history": [...], "k": int | None}``.

    Streaming the chain yields ``Delta`` items then one ``Answer``. ``condense`` makes follow-ups
    standalone (default: ``heuristic_condense``); ``verifier`` judges claims (default: exact
    matching); ``fallback`` answers when ``answerer`` fails or produces no supported sentence
    (the extractive answerer, typically). ``k``, when given, ranks that deep: the answerer still
    sees the first ``top_k`` and ``Answer.retrieved`` holds the whole ranking.
    """
    answer_one = partial(
        answer, answerer=answerer, fallback=fallback, verify=verifier or verify_by_match, settings=settings
    )
    answer_step = RunnableGenerator(partial(_each, answer_one)).with_config(run_name="answer_and_cite")
    return build_retrieval(retriever=retriever, settings=settings, condense=condense) | answer_step
