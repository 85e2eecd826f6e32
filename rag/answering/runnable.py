"""The assistant as a LangChain ``Runnable``: ``{"question", "history"}`` in, the answer JSON out.

For use in other people's chains and graphs (docs/langchain.md)::

    runnable = AssistantRunnable(assistant=open_assistant(settings))
    runnable.invoke({"question": "Who wrote the article?", "history": []})["answer"]

``invoke`` returns the JSON of ``rag ask --json`` (``Answer.to_dict``); ``stream`` yields
``{"delta": text}`` pieces as the chain makes them, then that JSON. It runs ``Assistant.stream``,
so questions are counted and logged as the front ends' are, and the callbacks of its config reach
the chain's named stages (``condense``, ``retrieve``, the retriever itself, ``answer_and_cite``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig

from rag.answering.assistant import Assistant
from rag.answering.types import Answer, Delta


class AssistantRunnable(Runnable[dict[str, Any], dict[str, Any]]):
    """``assistant`` (condense -> retrieve -> answer -> check citations) as one Runnable."""

    def __init__(self, assistant: Assistant, *, name: str = "assistant") -> None:
        self.assistant = assistant
        self.name = name

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        pieces = list(self.stream(input, config, **kwargs))
        return pieces[-1] if pieces else {}

    def stream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        # One traced run named ``name``; the chain's steps run inside it as its children.
        yield from self._transform_stream_with_config(iter([input]), self._pieces, config, run_type="chain")

    def _pieces(
        self,
        inputs: Iterator[dict[str, Any]],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[dict[str, Any]]:
        for turn in inputs:
            # The run's config is the context's here, so the chain inside reports to its callbacks.
            for event in self.assistant.stream(turn["question"], turn.get("history"), k=turn.get("k")):
                if isinstance(event, Delta):
                    yield {"delta": event.text}
                elif isinstance(event, Answer):
                    yield event.to_dict()
