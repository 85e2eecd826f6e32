"""ParallelEmbeddings: same vectors, same order, as the wrapped model; the real model agrees."""

from __future__ import annotations

import numpy as np
import pytest

from rag.index.parallel import MIN_PER_WORKER, ParallelEmbeddings, parallel_on_cpu
from tests.fakes import HashingEmbeddings

TEXTS = [f"passage {i} about {'sanctions ' * (i % 7)}and reactors number {i * 13}" for i in range(53)]


@pytest.mark.parametrize("count", [0, 1, MIN_PER_WORKER, 2 * MIN_PER_WORKER, 53])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_vectors_come_back_in_the_order_of_the_texts(count: int, workers: int) -> None:
    base = HashingEmbeddings()
    got = ParallelEmbeddings(base, workers=workers).embed_documents(TEXTS[:count])
    assert got == base.embed_documents(TEXTS[:count])


def test_small_batches_and_queries_go_straight_to_the_model() -> None:
    base = HashingEmbeddings()
    wrapped = ParallelEmbeddings(base, workers=2)
    wrapped.embed_documents(TEXTS[: 2 * MIN_PER_WORKER - 1])
    assert wrapped._pool is None
    assert wrapped.embed_query("reactors") == base.embed_query("reactors")


def test_a_single_core_keeps_the_model_as_it_is() -> None:
    base = HashingEmbeddings()
    assert parallel_on_cpu(base, 1) is base
    assert parallel_on_cpu(base, None) is base


@pytest.mark.integration
def test_real_model_in_parallel_agrees_with_one_batch_run(real_embeddings: object) -> None:
    from rag.config import Settings
    from rag.index.embeddings import spec_of

    wrapped = real_embeddings
    assert isinstance(wrapped, ParallelEmbeddings) or not hasattr(wrapped, "base")
    base = getattr(wrapped, "base", wrapped)
    texts = [t * 4 for t in TEXTS[:40]]
    a = np.array(wrapped.embed_documents(texts))  # type: ignore[attr-defined]
    b = np.array(base.embed_documents(texts))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999
    assert spec_of(Settings(_env_file=None), wrapped).dim == 384  # type: ignore[arg-type, call-arg]
