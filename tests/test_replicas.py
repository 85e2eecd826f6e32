"""Two app replicas against one Chroma server (docs/scaling.md): a one-shot ingest writes the
store, then two ``python app.py`` processes with ``RAG_INGEST_ON_START=false`` and empty data
directories of their own answer the same questions the same way, and neither writes anything:
not to the store, not to a data directory.

Real processes, the real embedding model and a real ``chroma run``: integration and slow (about
30-60 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.index.ingest import ingest
from tests.conftest import SHARED_MODELS, stop_process
from tests.test_reliability import chroma_server, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = (
    "the-diplomat-2016-why-should-the-us-talk-to-north-korea.md",
    "wikipedia-nuclear-suppliers-group.md",
    "cia-world-factbook-2016-north-korea.md",
)
QUESTIONS = (
    "What policy does the author call an immense failure?",
    "What does the Nuclear Suppliers Group do?",
    "How long is North Korea's coastline?",
)


def store_snapshot(port: int, collection: str) -> dict[str, Any]:
    """What a write would change: the collection's metadata, size and chunk ids."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    found = client.get_collection(collection)
    return {
        "collections": sorted(c.name for c in client.list_collections()),
        "metadata": found.metadata,
        "count": found.count(),
        "ids": sorted(found.get(include=[])["ids"]),
    }


def page_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def replica(tmp_path: Path, name: str, chroma_port: int) -> Iterator[tuple[str, Path, Path]]:
    """``python app.py`` as a read-only replica; yields its URL, data directory and log."""
    port = free_port()
    data = tmp_path / name
    log_path = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_CHROMA_HOST="127.0.0.1",
        RAG_CHROMA_PORT=str(chroma_port),
        RAG_DATA_DIR=str(data),
        RAG_CORPUS_DIR=str(tmp_path / "corpus"),
        RAG_MODEL_CACHE_DIR=str(SHARED_MODELS),
        RAG_INGEST_ON_START="false",
        RAG_PORT=str(port),
        RAG_RATE_LIMIT_PER_MINUTE="0",
        RAG_LOG_FORMAT="json",
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        ANONYMIZED_TELEMETRY="False",
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for(lambda: page_up(url), 120, f"{name} to serve its page", process)
            yield url, data, log_path
        finally:
            stop_process(process)


def ask(url: str, question: str) -> tuple[dict[str, Any], float]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    started = time.perf_counter()
    result = client.predict(question=question, api_name="/ask")
    return result, time.perf_counter() - started


def answer_key(answer: dict[str, Any]) -> tuple[Any, ...]:
    return (
        answer["answer"],
        answer["refused"],
        [(c["source"], c["chunk_id"], c["quote"]) for c in answer["citations"]],
        [(p["chunk_id"], p["score"]) for p in answer["retrieved"]],
    )


def test_two_replicas_on_one_chroma_server_answer_alike_and_write_nothing(
    tmp_path: Path, real_embeddings: Any
) -> None:
    if not SHARED_MODELS.exists():
        pytest.skip("the converted embedding model is not in .rag/models yet (run `make index`)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DOCUMENTS:
        shutil.copy(REPO / "corpus" / name, corpus / name)
    chroma_port = free_port()
    with chroma_server(tmp_path / "chroma", chroma_port):
        writer = Settings(  # type: ignore[call-arg]
            _env_file=None,
            corpus_dir=corpus,
            data_dir=tmp_path / "writer",
            chroma_host="127.0.0.1",
            chroma_port=chroma_port,
            model_cache_dir=SHARED_MODELS,
        )
        report = ingest(writer, lambda: real_embeddings)
        assert report.chunks_total > 0
        before = store_snapshot(chroma_port, writer.collection)
        assert before["metadata"]["index_fingerprint"]

        answers: dict[str, list[tuple[Any, ...]]] = {}
        seconds: dict[str, list[float]] = {}
        with ExitStack() as stack:
            replicas = [stack.enter_context(replica(tmp_path, f"replica-{n}", chroma_port)) for n in (1, 2)]
            for url, _, _ in replicas:
                for question in QUESTIONS:
                    result, took = ask(url, question)
                    answers.setdefault(url, []).append(answer_key(result))
                    seconds.setdefault(url, []).append(took)
        first, second = (answers[url] for url, _, _ in replicas)
        assert first == second
        assert all(not refused and cited for _, refused, cited, _ in first)

        after = store_snapshot(chroma_port, writer.collection)
        assert after == before
        for _, data, log_path in replicas:
            written = sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []
            assert written == []
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
            questions = [line for line in lines if line.get("event") == "question"]
            assert [q["outcome"] for q in questions] == ["answered"] * len(QUESTIONS)
            assert all("question" not in q and q["request_id"] for q in questions)
            assert not any(q in log_path.read_text() for q in QUESTIONS)
    print(json.dumps({"seconds_per_question": seconds}, indent=1))
