"""Fusion: several rankings of passages made into one (reciprocal rank fusion), and reorderings
that trade a little relevance for variety (maximal marginal relevance, a per-file cap)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.retrieval.passage import Passage


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of weight / (k + rank), rank from 1.

    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        weight = weights[i] if weights is not None else 1.0
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_passages(
    rankings: Sequence[Sequence[Passage]], k: int = 60, weights: Sequence[float] | None = None
) -> list[Passage]:
    """``reciprocal_rank_fusion`` over passage lists; each passage gets its ``fused`` score, and
    stays ``named`` when any list had it so (a later list may hold a fresh copy of the chunk)."""
    by_id = {p.chunk_id: p for ranking in rankings for p in ranking}
    named = {p.chunk_id for ranking in rankings for p in ranking if p.named}
    fused = reciprocal_rank_fusion([[p.chunk_id for p in ranking] for ranking in rankings], k, weights)
    for chunk_id, score in fused:
        by_id[chunk_id].fused = score
        by_id[chunk_id].named = chunk_id in named
    return [by_id[chunk_id] for chunk_id, _ in fused]


# A question that points at a written piece ("according to the article", "the author says",
# "the Diplomat op-ed") asks about a document with a byline, not about every text on its topic.


def mmr_order(query: np.ndarray, vectors: np.ndarray, relevance: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: pick ``k`` indices trading relevance against redundancy."""
    chosen: list[int] = []
    candidates = list(range(len(vectors)))
    while candidates and len(chosen) < k:
        if chosen:
            redundancy = (vectors[candidates] @ vectors[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(candidates))
        scores = lam * relevance[candidates] - (1 - lam) * redundancy
        best = candidates[int(np.argmax(scores))]
        chosen.append(best)
        candidates.remove(best)
    return chosen


def diversify(passages: list[Passage], k: int, per_source: int) -> list[Passage]:
    """Keep rank order but take at most ``per_source`` passages per file into the first ``k``;
    the passages set aside follow, in rank order, and fill any places left.

    >>> ps = [Passage(c, "", {"source": s}, 0.0) for c, s in [("a1", "a"), ("a2", "a"), ("b1", "b")]]
    >>> [p.chunk_id for p in diversify(ps, k=2, per_source=1)]
    ['a1', 'b1', 'a2']
    """
    picked: list[Passage] = []
    spare: list[Passage] = []
    counts: dict[str, int] = {}
    for p in passages:
        if len(picked) < k and counts.get(p.source, 0) < per_source:
            picked.append(p)
            counts[p.source] = counts.get(p.source, 0) + 1
        else:
            spare.append(p)
    return picked + spare
