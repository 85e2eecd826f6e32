"""docs/langchain.md's examples, run as written over a small corpus with the real bundled
embeddings, so the page cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes import write_corpus

DOC = Path(__file__).resolve().parent.parent / "docs" / "langchain.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_its_four_examples() -> None:
    code = blocks()
    assert len(code) == 4
    assert "open_assistant" in code[0] and "StateGraph" in code[3]


@pytest.mark.integration
def test_the_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    scope: dict[str, object] = {}
    for code in blocks():
        exec(compile(code, str(DOC), "exec"), scope)
    out = capsys.readouterr().out
    docs = scope["docs"]
    assert docs and all("chunk_id" in d.metadata for d in docs)  # type: ignore[attr-defined]
    assert "Answer from these passages" in out
    answer = scope["answer"]
    assert answer["citations"] and not answer["refused"]  # type: ignore[index]
    result = scope["result"]
    assert result["answer"] and result["sources"]  # type: ignore[index]
    assert "Entering new" in out or "chain" in out.lower()  # the console tracer printed the stages
