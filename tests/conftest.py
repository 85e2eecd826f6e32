from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from tests.fakes import HashingEmbeddings, write_corpus

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parent.parent
# The real embedding model converted to OpenVINO once for the whole session (the default folder of
# the checkout's own .rag), so app processes and CLI runs over test indexes do not convert again.
SHARED_MODELS = REPO / ".rag" / "models"


# `make test` sets RAG_REQUIRE_EXTRAS=1: there a missing optional extra (llama-cpp-python and its
# model) fails the tests that need it; elsewhere they are skipped, with the reason.
REQUIRE_EXTRAS = os.environ.get("RAG_REQUIRE_EXTRAS") == "1"


def require_extra(available: bool, reason: str) -> None:
    """Skip the calling test when an optional extra is missing, or fail it under
    ``RAG_REQUIRE_EXTRAS=1``; ``reason`` says what is missing and how to install it."""
    if available:
        return
    if REQUIRE_EXTRAS:
        pytest.fail(f"{reason} (RAG_REQUIRE_EXTRAS=1: optional extras are required)")
    pytest.skip(reason)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 20) -> None:
    """Stop a process a test started: terminate, then kill if it has not exited in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(autouse=True)
def _no_rag_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's RAG_* variables."""
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "corpus_dir": tmp_path / "corpus",
        "data_dir": tmp_path / "data",
        "min_relevance": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    write_corpus(tmp_path / "corpus")
    return make_settings(tmp_path)


@pytest.fixture
def fake_embeddings() -> HashingEmbeddings:
    return HashingEmbeddings()


@pytest.fixture(scope="session")
def corpus() -> dict[str, str]:
    """The bundled corpus/ files by name, which the question sets cite."""
    from rag.evaluation.harness import read_corpus

    return read_corpus(REPO / "corpus")


@pytest.fixture(scope="session")
def real_embeddings() -> Iterator[object]:
    from rag.index.embeddings import build_embeddings

    yield build_embeddings(Settings(_env_file=None, model_cache_dir=SHARED_MODELS))  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory, real_embeddings: object) -> Settings:
    """The bundled corpus indexed once with the real model into a temp data dir."""
    from rag.index.ingest import ingest

    data = tmp_path_factory.mktemp("real-index")
    s = Settings(  # type: ignore[call-arg]
        _env_file=None, corpus_dir=REPO / "corpus", data_dir=data, model_cache_dir=SHARED_MODELS
    )
    ingest(s, lambda: real_embeddings)  # type: ignore[arg-type, return-value]
    return s
