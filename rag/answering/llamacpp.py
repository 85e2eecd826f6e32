"""The ``llamacpp`` answerer: a local GGUF model (Qwen2.5-Coder Instruct) through llama-cpp-python.

One loaded model per process serves three jobs: answering (streamed), condensing follow-up
questions, and judging whether an answer sentence is supported by the passage it cites. The
model loads on first use, never at import, and is shared by path::

    answerer = build_llamacpp_answerer(settings)       # nothing loaded yet
    "".join(answerer.stream(question, passages, []))    # loads, then streams

Speed on 2 CPU cores is set by the number of prompt tokens the model must read, so the prompt
keeps its stable part (the system prompt) first, where llama.cpp's prefix cache reuses it, and
hands the model only the few best passages, each trimmed to the sentences that matter.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rag.answering import prompts
from rag.answering.condense import FOLLOWUP_HINT, Condenser, heuristic_condense
from rag.answering.llm_files import checked_model_path
from rag.answering.types import AnswererError, Turn
from rag.answering.verification import Verifier, parse_verdict, verify_by_match
from rag.config import Settings
from rag.retrieval import Passage
from rag.text import content_tokens, split_sentences, strip_markers

Message = dict[str, str]

# Prompt budget, chosen with bench/llm_bench.py: every prompt token costs ~10 ms on the 1.5B model.
MAX_PASSAGES = 3
PASSAGE_CHARS = 420
JUDGE_PASSAGE_CHARS = 600
HISTORY_TURNS = 2  # the last exchange is enough context once the question is condensed
HISTORY_CHARS = 300


@dataclasses.dataclass
class AnswerContext:
    """An answer as the model saw it: the chat, its reply, and the chunk ids shown as [1], [2]..."""

    messages: list[Message]
    reply: str
    shown: list[str]


class LocalModel:
    """A lazily loaded ``llama_cpp.Llama`` with a lock: llama.cpp contexts are not thread-safe."""

    def __init__(self, loader: Callable[[], Any], *, name: str = "llamacpp") -> None:
        self._loader = loader
        self._llm: Any = None
        self.name = name
        self.lock = threading.RLock()
        self._local = threading.local()

    @property
    def last_answer(self) -> AnswerContext | None:
        """The answer this thread generated last (its verification reuses the cached prompt)."""
        return getattr(self._local, "last_answer", None)

    @last_answer.setter
    def last_answer(self, value: AnswerContext | None) -> None:
        self._local.last_answer = value

    @property
    def llm(self) -> Any:
        with self.lock:
            if self._llm is None:
                self._llm = self._loader()
            return self._llm

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def chat_stream(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        """Stream the reply to ``messages`` (greedy decoding, so answers are reproducible)."""
        with self.lock:
            chunks = self.llm.create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=max_tokens,
                temperature=0.0,
                # Answers quote the passages: a repeat penalty would push the model off their words.
                repeat_penalty=1.0,
                seed=0,
            )
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text

    def chat(self, messages: list[Message], *, max_tokens: int) -> str:
        return "".join(self.chat_stream(messages, max_tokens=max_tokens))


def load_llama(path: Path, *, threads: int, context: int) -> Any:
    """Load a GGUF with llama-cpp-python (imported here: it is an optional extra)."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise AnswererError(
            "llama-cpp-python is not installed: run `make llm` (see docs/llm.md)"
        ) from exc
    return Llama(
        model_path=str(path),
        n_ctx=context,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        seed=0,
        verbose=False,
    )


_SHARED: dict[tuple[str, int, int], LocalModel] = {}
_SHARED_LOCK = threading.Lock()


def shared_model(settings: Settings) -> LocalModel:
    """The process-wide model for these settings (verified and loaded on first use)."""
    path = checked_model_path(settings)  # cheap after the first check: see llm_files.verify_file
    key = (str(path.resolve()), settings.llm_threads, settings.llm_context)
    with _SHARED_LOCK:
        if key not in _SHARED:
            loader = partial(load_llama, path, threads=settings.llm_threads, context=settings.llm_context)
            _SHARED[key] = LocalModel(loader, name=path.name)
        return _SHARED[key]


def trim_passage(text: str, query: str, max_chars: int) -> str:
    """The run of consecutive sentences of ``text`` (at most ``max_chars``) that shares most
    content words with ``query``; the whole text when it fits.

    >>> trim_passage("Cats purr. Dogs bark loudly. Birds sing.", "why do dogs bark", 25)
    'Dogs bark loudly.'
    """
    if len(text) <= max_chars:
        return text
    sentences = split_sentences(text) or [text]
    wanted = set(content_tokens(query))
    scores = [len(wanted & set(content_tokens(s))) for s in sentences]
    best: tuple[int, int, int] = (-1, 0, 0)  # (score, start, end)
    for start in range(len(sentences)):
        length, score, end = 0, 0, start
        while end < len(sentences) and length + len(sentences[end]) + 1 <= max_chars:
            length += len(sentences[end]) + 1
            score += scores[end]
            end += 1
        if end > start and score > best[0]:
            best = (score, start, end)
    if best[0] < 0:  # even the first sentence is too long: cut it at a word boundary
        return text[:max_chars].rsplit(" ", 1)[0] + " …"
    return " ".join(sentences[best[1] : best[2]])


def answer_messages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    *,
    max_passages: int = MAX_PASSAGES,
    passage_chars: int = PASSAGE_CHARS,
) -> list[Message]:
    """The chat for one answer: the fixed system prompt first (cached across questions), the last
    exchange, then the numbered, trimmed passages and the question.

    Passages keep their retrieval order, so ``[n]`` still means ``passages[n - 1]``.
    """
    previous = [t["content"] for t in history if t.get("role") == "user"]
    query = " ".join([question, *previous[-1:]])
    shown = [
        dataclasses.replace(p, text=trim_passage(p.text, query, passage_chars))
        for p in passages[:max_passages]
    ]
    messages: list[Message] = [
        {"role": "system", "content": prompts.load("answer_system").format(refusal=prompts.refusal())},
        # Worked examples (an answer, a refusal) teach small models the format better than rules
        # do; being fixed, they are part of the cached prefix and cost nothing per question.
        {"role": "user", "content": prompts.load("answer_example_user")},
        {"role": "assistant", "content": prompts.load("answer_example_assistant")},
        {"role": "user", "content": prompts.load("answer_example2_user")},
        {"role": "assistant", "content": prompts.refusal()},
    ]
    for turn in list(history)[-HISTORY_TURNS:] if HISTORY_TURNS else []:
        # Old [n] markers pointed at other passages: they would only mislead the model.
        content = strip_markers(str(turn.get("content", "")))[:HISTORY_CHARS]
        messages.append(
            {"role": "assistant" if turn.get("role") == "assistant" else "user", "content": content}
        )
    messages.append(
        {
            "role": "user",
            "content": prompts.load("answer_user").format(
                passages=prompts.format_passages(shown), question=question
            ),
        }
    )
    return messages


class LlamaCppAnswerer:
    """Answers with the local model from the prompt files, streaming its tokens."""

    name = "llamacpp"

    def __init__(
        self,
        model: LocalModel,
        *,
        max_tokens: int = 256,
        max_passages: int = MAX_PASSAGES,
        passage_chars: int = PASSAGE_CHARS,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.max_passages = max_passages
        self.passage_chars = passage_chars

    def messages(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> list[Message]:
        return answer_messages(
            question, passages, history, max_passages=self.max_passages, passage_chars=self.passage_chars
        )

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        messages = self.messages(question, passages, history)
        self.model.last_answer = None
        pieces: list[str] = []
        try:
            for piece in self.model.chat_stream(messages, max_tokens=self.max_tokens):
                pieces.append(piece)
                yield piece
            shown = [p.chunk_id for p in passages[: self.max_passages]]
            self.model.last_answer = AnswerContext(messages, "".join(pieces), shown)
        except AnswererError:
            raise
        except Exception as exc:  # llama.cpp load and decode errors of every kind
            raise AnswererError(f"the local model failed: {type(exc).__name__}: {exc}") from exc


def judge_messages(claim: str, passage_texts: Sequence[str]) -> list[Message]:
    """A strict yes/no support question: instructions first (cached), then passage(s), claim."""
    evidence = "\n\n".join(trim_passage(t, claim, JUDGE_PASSAGE_CHARS) for t in passage_texts)
    return [
        {"role": "system", "content": prompts.load("judge")},
        {
            "role": "user",
            "content": prompts.load("judge_user").format(passage=evidence, claim=strip_markers(claim)),
        },
    ]


def followup_judge_messages(context: AnswerContext, claim: str, numbers: Sequence[int]) -> list[Message]:
    """The yes/no question as the next turn of the answer's own chat.

    llama.cpp still holds that chat in its cache, so the model reads only this short question
    (~40 tokens) instead of a fresh prompt with the passage (~250): about 0.4 s instead of 2.5 s
    per sentence on the 1.5B model.
    """
    cited = ", ".join(f"[{n}]" for n in numbers)
    question = prompts.load("judge_followup").format(claim=strip_markers(claim), cited=cited)
    return [
        *context.messages,
        {"role": "assistant", "content": context.reply},
        {"role": "user", "content": question},
    ]


def judge(model: LocalModel, claim: str, passage_texts: Sequence[str]) -> bool | None:
    """The model's strict judgement of whether the passages state the claim (None: no verdict)."""
    return parse_verdict(model.chat(judge_messages(claim, passage_texts), max_tokens=3))


def build_llamacpp_answerer(settings: Settings, model: LocalModel | None = None) -> LlamaCppAnswerer:
    """The ``llamacpp`` answerer for these settings (the model loads at the first question).

    Fails fast, before any question, when the model file is missing or not the official one.
    """
    return LlamaCppAnswerer(model or shared_model(settings), max_tokens=settings.llm_max_tokens)


def llamacpp_condense(settings: Settings, model: LocalModel | None = None) -> Condenser:
    """Condense follow-ups into standalone questions with the local model.

    A question that does not look like a follow-up is returned as is: asking the model would cost
    a second of prompt reading for nothing.
    """
    local = model or shared_model(settings)

    def condense(question: str, history: Sequence[Turn]) -> str:
        if not history or (len(content_tokens(question)) > 4 and not FOLLOWUP_HINT.search(question)):
            return question
        text = "\n".join(f"{t['role']}: {strip_markers(t['content'])[:HISTORY_CHARS]}" for t in history[-4:])
        try:
            reply = local.chat(
                [
                    {
                        "role": "user",
                        "content": prompts.load("condense").format(history=text, question=question),
                    }
                ],
                max_tokens=64,
            )
        except Exception:  # noqa: BLE001 - condensing is an optimisation, never a failure
            return heuristic_condense(question, history)
        lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
        return lines[0] if lines else heuristic_condense(question, history)

    return condense


def llamacpp_verifier(settings: Settings, model: LocalModel | None = None) -> Verifier:
    """Verifier for the chain: a sentence quoted from its passage is supported outright;
    otherwise the local model judges it strictly against the passage(s) it cites: as a follow-up
    question in the chat that produced the answer when those passages were shown there (fast:
    the chat is cached), else in a fresh prompt with the passage text.
    """
    local = model or shared_model(settings)

    def verify(claim: str, passages: Sequence[Passage]) -> bool | None:
        matched = verify_by_match(claim, passages)
        if matched is not None:
            return matched
        context = local.last_answer
        try:
            if context is not None and all(p.chunk_id in context.shown for p in passages):
                numbers = [context.shown.index(p.chunk_id) + 1 for p in passages]
                reply = local.chat(followup_judge_messages(context, claim, numbers), max_tokens=3)
                return parse_verdict(reply)
            # The heading says whose facts these are ("Coastline: 2,495 km" of which country?).
            return judge(
                local,
                claim,
                [f"({' > '.join(x for x in (p.title, p.section) if x)})\n{p.text}" for p in passages],
            )
        except Exception:  # noqa: BLE001 - an unverifiable sentence is reported as unsupported
            return None

    return verify


def llamacpp_judge(settings: Settings, model: LocalModel | None = None) -> Verifier:
    """The local model's strict yes/no on whether the passages state the claim, in a fresh prompt
    (for evals: unlike ``llamacpp_verifier``, no claim passes without the model's "yes")."""
    local = model or shared_model(settings)

    def verify(claim: str, passages: Sequence[Passage]) -> bool | None:
        return judge(local, claim, [p.text for p in passages])

    return verify
