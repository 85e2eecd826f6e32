"""Answers from any LangChain chat model, e.g. an OpenAI-compatible server (Ollama, vLLM,
llama.cpp's server, OpenAI), written from the prompt files and streamed token by token."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rag.answering import prompts
from rag.answering.types import AnswererError, Turn
from rag.answering.verification import Verifier, parse_verdict
from rag.config import Settings
from rag.retrieval import Passage
from rag.text import strip_markers

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


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
                prompts.load("answer_user").format(
                    passages=prompts.format_passages(passages), question=question
                )
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
    """The chat model of an OpenAI-compatible server at ``settings.openai_base_url``."""
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


def chat_model_judge(model: BaseChatModel) -> Verifier:
    """A strict yes/no question to ``model`` per claim: do the passages state it? (None when the
    model fails or answers neither.)"""

    def verify(claim: str, passages: Sequence[Passage]) -> bool | None:
        text = "\n\n".join(p.text for p in passages)
        prompt = prompts.load("judge_support").format(passages=text, claim=strip_markers(claim))
        try:
            reply = model.invoke(prompt)
        except Exception:  # noqa: BLE001 - a judge that cannot answer must not stop the eval
            return None
        return parse_verdict(str(getattr(reply, "content", reply)))

    return verify
