"""The local model as reader and judge, not writer: the answer is the extractive answerer's
quoted sentences, shown only when the model finds that they state what was asked.

On 2 cores the 1.5B model wrote answers that were worse than the quotes (key facts in 0.30 of
answerable questions against 0.54) and some it invented (issue 15). Asked instead for one
yes/no judgement over the quotes, read from the log-probabilities of "yes" and "no" after one
forward pass, it separates answerable from unanswerable questions (AUROC 0.80 over 138 answers
of the golden, held-out, blind and fresh sets), at a prompt of about 150 tokens. Every shown
sentence stays a verbatim quote, so nothing generated needs checking::

    answerer = JudgedAnswerer(extractive, partial(yes_no_margin, model), min_margin=-1.2)
    "".join(answerer.stream(question, passages, history))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from rag.answering import prompts
from rag.answering.extractive import ExtractiveAnswerer, quoted
from rag.answering.recent import RecentTurns
from rag.answering.types import Turn
from rag.config import Settings
from rag.retrieval import Passage

# Qwen2.5's chat format (ChatML), written out because the judgement is read from the logits of
# the first token after the assistant's turn opens, which create_chat_completion does not give
# without computing logits for every prompt token.
TURN = "<|im_start|>{role}\n{content}<|im_end|>\n"
REPLY = "<|im_start|>assistant\n"


class JudgeModel(Protocol):
    """What the judge needs of the local model: the loaded ``llama_cpp.Llama`` and its lock."""

    lock: Any

    @property
    def llm(self) -> Any: ...


def yes_no_margin(model: JudgeModel, system: str, user: str) -> float:
    """log P(yes) - log P(no) for the model's first reply token to ``user``.

    The system turn is evaluated once, alone, and kept in llama.cpp's cache; each judgement then
    evaluates only its user turn, always in one batch from the same cached state. Reusing a
    longer shared prefix would be faster, but llama.cpp's numbers depend on how the tokens were
    batched (0.07 apart here for the same prompt), and the same question must get the same answer.
    """
    with model.lock:
        llm = model.llm
        head = _tokens(llm, TURN.format(role="system", content=system))
        rest = _tokens(llm, TURN.format(role="user", content=user) + REPLY)
        if _cached_head.get(id(llm)) != head or list(llm.input_ids[: len(head)]) != head:
            llm.n_tokens = 0
            llm.eval(head)
            _cached_head[id(llm)] = head
        llm.n_tokens = len(head)
        llm.eval(rest)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        yes = [_first_token(llm, w) for w in ("yes", "Yes")]
        no = [_first_token(llm, w) for w in ("no", "No")]
        return float(np.logaddexp.reduce(logits[yes]) - np.logaddexp.reduce(logits[no]))


# The system turn each loaded model holds as evaluated by ``yes_no_margin`` itself. The judge is
# the only user of the model when it judges (the chain condenses and checks quotes without it),
# so nothing else rewrites those cached positions.
_cached_head: dict[int, list[int]] = {}


def _tokens(llm: Any, text: str) -> list[int]:
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def _first_token(llm: Any, word: str) -> int:
    return int(llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)[0])


class JudgedAnswerer:
    """Extractive quotes, kept only when the local model judges that they state the answer."""

    name = "llamacpp"

    def __init__(
        self,
        extractive: ExtractiveAnswerer,
        judge: Callable[[str, str], float],
        *,
        min_margin: float,
        condense: Callable[[str, Sequence[Turn]], str] | None = None,
    ) -> None:
        self.extractive = extractive
        # (system prompt, user prompt) -> log P(yes) - log P(no): ``yes_no_margin`` over the
        # local model, or anything that judges the same way (tests hand in a function).
        self.judge = judge
        self.min_margin = min_margin
        # A follow-up ("When did he say that?") is judged as the standalone question it stands for.
        self.condense = condense
        # The turns the judge refused lately, for ``why_refused`` (asked right after ``stream``).
        self._judged_no: RecentTurns[float] = RecentTurns()

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        picked = self.extractive.select(question, passages)
        if not picked:
            yield prompts.refusal()
            return
        margin = self.margin(question, [s for _, s in picked], history)
        if margin < self.min_margin:
            self._judged_no.put(question, passages, margin)
            yield prompts.refusal()
            return
        yield from quoted(picked)

    def why_refused(self, question: str, passages: Sequence[Passage]) -> str | None:
        """Why ``stream`` refused: what the extractive checks found missing, or the judge's no."""
        margin = self._judged_no.get(question, passages)
        if margin is not None:
            return (
                "the local model judged that the closest passages do not state the answer"
                f" (margin {margin:.1f})"
            )
        return self.extractive.why_refused(question, passages)

    def margin(self, question: str, sentences: Sequence[str], history: Sequence[Turn]) -> float:
        """How much likelier the model finds "yes, these sentences state the answer" than "no"."""
        asked = self.condense(question, history) if self.condense and history else question
        user = prompts.load("judge_answer_user").format(
            question=asked, sentences="\n".join(f"- {s}" for s in sentences)
        )
        return self.judge(prompts.load("judge_answer_system"), user)


def build_judged_answerer(
    settings: Settings, extractive: ExtractiveAnswerer, model: JudgeModel | None = None
) -> JudgedAnswerer:
    """The ``llamacpp`` answerer in its judge role (the model loads at the first question).

    Fails fast, before any question, when the model file is missing or not the official one.
    """
    from functools import partial

    from rag.answering.condense import heuristic_condense
    from rag.answering.llamacpp import shared_model

    judge_model = model or shared_model(settings)
    return JudgedAnswerer(
        extractive,
        partial(yes_no_margin, judge_model),
        min_margin=settings.llm_min_margin,
        condense=heuristic_condense if settings.condense else None,
    )
