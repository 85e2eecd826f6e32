"""Wiring: build the index handles and the ``Assistant`` from one ``Settings`` object.

Composition roots (``app.py``, the CLI, the Slack bot's entry point) call ``build_assistant``;
tests build the pieces themselves with fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.answering.chain import Assistant, build_chain, llm_condense
from rag.answering.extractive import ExtractiveAnswerer, build_answerer, build_openai_model
from rag.config import Settings
from rag.embeddings import build_embeddings, spec_of
from rag.ingest import Manifest, sync_lexical
from rag.lexical import LexicalIndex
from rag.retrieval import HybridRetriever
from rag.store import IndexMissingError, make_client, open_collection

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings


@dataclass
class OpenIndex:
    collection: Collection
    lexical: LexicalIndex
    titles: LexicalIndex
    documents: int
    chunks: int

    def retriever(self, embeddings: Embeddings, settings: Settings) -> HybridRetriever:
        return HybridRetriever(
            collection=self.collection,
            embeddings=embeddings,
            lexical=self.lexical,
            titles=self.titles,
            settings=settings,
        )


def open_index(settings: Settings, embeddings: Embeddings) -> OpenIndex:
    """Open the built index for querying; raises ``IndexMissingError`` when there is none."""
    manifest = Manifest.load(settings.manifest_path)
    if not manifest.files:
        raise IndexMissingError(
            f"no index in {settings.data_dir}: run `rag ingest` to build it from {settings.corpus_dir}"
        )
    spec = spec_of(settings, embeddings)
    collection = open_collection(
        make_client(settings), settings.collection, spec.name, spec.dim, create=False
    )
    lexical, titles = sync_lexical(settings, collection, manifest)
    return OpenIndex(collection, lexical, titles, len(manifest.files), collection.count())


def build_assistant(settings: Settings, embeddings: Embeddings | None = None) -> Assistant:
    """Settings -> embeddings -> index -> retriever -> answerer -> chain -> Assistant."""
    embeddings = embeddings or build_embeddings(settings)
    index = open_index(settings, embeddings)
    retriever = index.retriever(embeddings, settings)
    answerer = build_answerer(settings, embeddings)
    extractive = ExtractiveAnswerer(
        embeddings,
        max_sentences=settings.extractive_max_sentences,
        min_score=settings.extractive_min_score,
    )
    condense: Any = None
    verifier: Any = None
    if settings.answerer == "openai":
        condense = llm_condense(build_openai_model(settings))
    elif settings.answerer == "llamacpp" and settings.llm_role == "writer":
        # A judged answer is made of quotes: the heuristic condenses and exact matching checks
        # it, and the model's time goes to the one judgement.
        from rag.answering.llamacpp import llamacpp_condense, llamacpp_verifier

        condense = llamacpp_condense(settings)
        verifier = llamacpp_verifier(settings)
    chain = build_chain(
        retriever=retriever,
        answerer=answerer,
        settings=settings,
        condense=condense,
        verifier=verifier,
        fallback=extractive if settings.fallback_to_extractive and answerer.name != "extractive" else None,
    )
    status = {"documents": index.documents, "chunks": index.chunks, "answerer": answerer.name}
    return Assistant(chain, status=status)
