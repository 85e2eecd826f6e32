"""LangChain's own standard tests for retrievers (``langchain-tests``), run against
``HybridRetriever`` over a small index built here with the real bundled embeddings."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import installed, make_settings, require_extra
from tests.fakes import write_corpus

# The suite's one async test has no marker of its own (it expects asyncio_mode=auto): marked here,
# for this module only, rather than switching the whole project's pytest into auto mode.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio':pytest.PytestWarning"),
]

if installed("langchain_tests"):
    from langchain_tests.integration_tests import RetrieversIntegrationTests
else:  # the dev extra brings it; without it the one test below says so
    RetrieversIntegrationTests = object  # type: ignore[assignment,misc]


def test_langchain_tests_is_installed() -> None:
    require_extra(installed("langchain_tests"), "langchain-tests is missing: pip install -e '.[dev]'")


@cache
def small_index() -> dict[str, Any]:
    """The retriever's constructor arguments over the test corpus, ingested once per session
    with the bundled all-MiniLM-L6-v2 (not the fakes: the standard tests are about the real thing)."""
    from rag.answering.assistant import open_index
    from rag.index.embeddings import build_embeddings
    from rag.index.ingest import ingest

    root = Path(tempfile.mkdtemp(prefix="rag-lc-standard-"))
    write_corpus(root / "corpus")
    settings = make_settings(root, top_k=4, chunk_size=200, chunk_overlap=0)
    embeddings = build_embeddings(settings)
    ingest(settings, lambda: embeddings)
    index = open_index(settings, embeddings)
    assert index.chunks >= 4, "the standard tests ask for up to 3 documents"
    return {
        "collection": index.collection,
        "embeddings": embeddings,
        "lexical": index.lexical,
        "titles": index.titles,
        "settings": settings,
    }


class TestHybridRetrieverStandard(RetrieversIntegrationTests):  # type: ignore[misc,valid-type]
    @property
    def retriever_constructor(self) -> type[Any]:
        from rag.retrieval import HybridRetriever

        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return dict(small_index())

    @property
    def retriever_query_example(self) -> str:
        return "Who wrote the article about the Security Council?"

