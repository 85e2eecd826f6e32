"""Condensing: a follow-up ("Who wrote it?") becomes a question that stands on its own.

Retrieval searches the standalone question; the answerer still sees the question as asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rag.answering import prompts
from rag.answering.types import Turn
from rag.text import content_tokens

# Turns a question and the conversation before it into a standalone question.
Condenser = Callable[[str, Sequence[Turn]], str]

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


def llm_condense(model: Any) -> Condenser:
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
