"""Data-parallel embedding on a few CPU cores: one torch thread per worker, batches side by side.

Torch splits each matrix product of one small batch across its intra-op threads, which then
wait for one another at every layer. On a machine whose cores are shared (other processes,
or the web app's own concurrent requests) one descheduled thread stalls the rest: a question
embedding that takes 5 ms took 500 ms about one time in ten (bench/RESULTS.md). Giving each
worker thread its own share of the texts, with one torch thread each, keeps the cores busy
without that lock-step, and embedded the corpus about 10% faster on an idle 2-core machine.

    embeddings = ParallelEmbeddings(HuggingFaceEmbeddings(...), workers=2)
    vectors = embeddings.embed_documents(texts)   # same order as texts
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.embeddings import Embeddings

# Below this many texts per worker, splitting costs more than it gains.
MIN_PER_WORKER = 8


class ParallelEmbeddings(Embeddings):
    """Wraps an ``Embeddings`` so ``embed_documents`` runs its texts in ``workers`` threads."""

    def __init__(self, base: Embeddings, workers: int) -> None:
        self.base = base
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        # spec_of() reads the model's dimension from the wrapped client.
        self._client: Any = getattr(base, "_client", None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        n = min(self.workers, len(texts) // MIN_PER_WORKER)
        if n < 2:
            return self.base.embed_documents(texts)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed")
        # Interleaved shares, so each worker gets as many long texts as short ones.
        shares = [texts[i::n] for i in range(n)]
        results = list(self._pool.map(self.base.embed_documents, shares))
        out: list[list[float]] = [[] for _ in texts]
        for i, vectors in enumerate(results):
            out[i::n] = vectors
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.base.embed_query(text)


def parallel_on_cpu(base: Embeddings, cpus: int | None) -> Embeddings:
    """One torch thread per worker and one worker per core; ``base`` itself on a single core."""
    if not cpus or cpus < 2:
        return base
    import torch

    # Process-wide: every torch op in this process then runs on the calling thread only.
    torch.set_num_threads(1)
    return ParallelEmbeddings(base, workers=cpus)
