"""The assistant as a LangChain Runnable (rag.answering.runnable), over the fake embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.callbacks.base import BaseCallbackHandler

from rag.answering import AssistantRunnable
from rag.answering.assistant import open_assistant
from rag.index.ingest import ingest
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings, write_corpus
from tests.test_retrieval_routing import OP_ED, QUESTION, REFERENCE


class Stages(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[Any] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.names.append(kwargs.get("name"))

    def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
        self.names.append(kwargs.get("name"))


def test_the_assistant_runnable_answers_streams_and_traces_its_stages(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus", {"op-ed.md": OP_ED, "reference.md": REFERENCE})
    settings = make_settings(tmp_path, top_k=3, chunk_size=200, chunk_overlap=0)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    assistant = open_assistant(settings, embeddings=embeddings)
    runnable = AssistantRunnable(assistant)
    stages = Stages()
    out = runnable.invoke({"question": QUESTION, "history": []}, {"callbacks": [stages]})
    assert out == {**assistant.ask(QUESTION).to_dict(), "timings_ms": out["timings_ms"]}
    assert out["citations"] and not out["refused"]
    for stage in ("assistant", "condense", "retrieve", "HybridRetriever", "answer_and_cite"):
        assert stage in stages.names
    pieces = list(runnable.stream({"question": QUESTION, "history": []}))
    deltas = [p["delta"] for p in pieces[:-1]]
    assert deltas and "".join(deltas).strip() == pieces[-1]["answer"]
