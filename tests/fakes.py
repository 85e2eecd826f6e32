"""Deterministic fakes for unit tests: embeddings, chat models, index builders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.text import content_tokens


class HashingEmbeddings(Embeddings):
    """Bag-of-words vectors (stop words dropped) hashed into ``dim`` buckets, L2-normalised.

    Texts that share words get a high cosine similarity, so retrieval results can be asserted
    exactly, and nothing is loaded.
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.calls = 0

    def _vec(self, text: str) -> list[float]:
        vec = np.zeros(self.dim, dtype=np.float32)
        for word in content_tokens(text):
            bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim
            vec[bucket] += 1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0:
            vec[0] = 1.0
            norm = 1.0
        return (vec / norm).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


SMALL_CORPUS = {
    "article.md": """---
title: "Why Talk to Pyongyang"
author: "Jane Writer"
publication: "The Test Gazette"
published: 2016
source_url: https://example.org/article
---

# Why Talk to Pyongyang

The strategic patience policy has proved to be an immense failure. Talks are a sign of strength.

## Trade

China accounts for 70 percent of North Korea's trade.
""",
    "factbook.md": """---
title: "Factbook: Korea, North"
source_url: https://example.org/factbook
---

# Factbook: Korea, North

## Geography

### Coastline

2,495 km

## Economy

### GDP

North Korea GDP was 40 billion dollars in 2015.
""",
    "notes.txt": "Kimchi is a traditional fermented vegetable dish. It is eaten with most meals.\n",
}


def write_corpus(folder: Path, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or SMALL_CORPUS).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def build_fake_assistant(settings, embeddings=None, answerer=None, **chain_kwargs):  # type: ignore[no-untyped-def]
    """Ingest ``settings.corpus_dir`` with hashing embeddings and wire the real chain on top."""
    from rag.answering import Assistant
    from rag.answering.assistant import open_index
    from rag.answering.chain import build_chain, build_retrieval
    from rag.answering.extractive import ExtractiveAnswerer
    from rag.index.ingest import ingest

    embeddings = embeddings or HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    index = open_index(settings, embeddings)
    retriever = index.retriever(embeddings, settings)
    answerer = answerer or ExtractiveAnswerer(embeddings, min_score=0.1)
    chain = build_chain(retriever=retriever, answerer=answerer, settings=settings, **chain_kwargs)
    retrieval = build_retrieval(retriever=retriever, settings=settings, condense=chain_kwargs.get("condense"))
    return Assistant(
        chain,
        retrieval=retrieval,
        status={"documents": index.documents, "chunks": index.chunks, "answerer": answerer.name},
    )
