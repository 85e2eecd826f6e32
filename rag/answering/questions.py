"""What the chain accepts as a question and as the conversation before it."""

from __future__ import annotations

from typing import Any

from rag.answering.types import QuestionError, Turn


def check_question(question: str, max_chars: int) -> str:
    """Normalise a question or raise ``QuestionError`` with a message for users.

    >>> check_question("  Who wrote it?\\x00 ", 100)
    'Who wrote it?'
    """
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
