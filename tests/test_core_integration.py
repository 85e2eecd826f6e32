"""The core end to end with the real bundled embedding model and a real (embedded) Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rag.answering import open_assistant
from rag.cli import app
from rag.config import Settings
from rag.index.ingest import index_status, ingest

pytestmark = pytest.mark.integration
ARTICLE = "the-diplomat-2016-why-should-the-us-talk-to-north-korea.md"


@pytest.fixture(scope="module")
def assistant(real_index: Settings, real_embeddings: object):  # type: ignore[no-untyped-def]
    return open_assistant(real_index, embeddings=real_embeddings)  # type: ignore[arg-type]


def test_the_done_when_question(assistant) -> None:  # type: ignore[no-untyped-def]
    answer = assistant.ask("What policy does the author call an immense failure?")
    assert not answer.refused
    assert "strategic patience" in answer.answer.lower()
    assert answer.citations and answer.citations[0].passage.source == ARTICLE
    assert "immense failure" in answer.citations[0].quote
    assert all(s.supported for s in answer.sentences)


def test_followup_about_the_author(assistant) -> None:  # type: ignore[no-untyped-def]
    first = assistant.ask("What policy does the author call an immense failure?")
    # As the web chat and the Slack bot pass it: the earlier answer with the files it cited.
    history = [
        {"role": "user", "content": first.question},
        {
            "role": "assistant",
            "content": first.answer,
            "sources": [c.passage.source for c in first.citations],
        },
    ]
    answer = assistant.ask("Who wrote it?", history)
    assert "DePetris" in answer.answer
    assert any(c.passage.source == ARTICLE for c in answer.citations)


def test_exact_figure_from_the_factbook(assistant) -> None:  # type: ignore[no-untyped-def]
    answer = assistant.ask("How long is North Korea's coastline?")
    assert "2,495 km" in answer.answer
    assert answer.citations[0].passage.source == "cia-world-factbook-2016-north-korea.md"


def test_off_topic_question_is_refused(assistant) -> None:  # type: ignore[no-untyped-def]
    answer = assistant.ask("What is a good recipe for banana bread?")
    assert answer.refused and answer.citations == []


def test_cli_ask_json(real_index: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(real_index.data_dir))
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(real_index.models_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(real_index.corpus_dir))
    result = CliRunner().invoke(
        app, ["ask", "--json", "What policy does the author call an immense failure?"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["citations"][0]["source"] == ARTICLE
    assert data["refused"] is False and data["mode"] == "extractive"


def test_cli_ask_jsonl(real_index: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(real_index.data_dir))
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(real_index.models_dir))
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"question": "How long is North Korea's coastline?", "history": []})
        + "\nnot json\n"
        + json.dumps({"question": "   "})
        + "\n"
    )
    result = CliRunner().invoke(app, ["ask", "--jsonl", str(questions)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    assert "2,495 km" in lines[0]["answer"]
    assert lines[1]["line"] == 2 and "not a question" in lines[1]["error"]
    assert "type a question" in lines[2]["error"]


def test_reingest_unchanged_corpus_changes_nothing(real_index: Settings) -> None:
    assert index_status(real_index) is None

    def no_model() -> object:
        raise AssertionError("an unchanged corpus must not load the model")

    report = ingest(real_index, no_model)  # type: ignore[arg-type]
    assert report.chunks_added == 0 and report.chunks_removed == 0 and report.files_unchanged == 26


def test_bf16_embeddings_agree_with_fp32(real_embeddings: object) -> None:
    from rag.index.embeddings import build_embeddings, cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16; fp32 is used")
    # The reference: sentence-transformers in PyTorch fp32, as the model was trained and shipped.
    fp32 = build_embeddings(
        Settings(_env_file=None, embedding_backend="torch", embedding_precision="fp32")  # type: ignore[call-arg]
    )
    texts = [p.read_text()[:1500] for p in sorted(Path("corpus").glob("*.md"))[:12]]
    a = np.asarray(fp32.embed_documents(texts))
    b = np.asarray(real_embeddings.embed_documents(texts))  # type: ignore[attr-defined]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999


def test_cli_config_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "sk-very-secret")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0
    assert "sk-very-secret" not in result.output and 'openai_api_key = "**********"' in result.output


def test_cli_rejects_unknown_setting_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_ANSWERER", "telepathy")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 2 and "answerer" in result.output
