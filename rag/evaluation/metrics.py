"""Eval metrics: score one answer (the JSON of ``rag ask --json``) against a golden item.

Every function here is pure: it takes the golden item, the answer JSON and the retrieval ranking,
and returns numbers. ``None`` means "does not apply" (no retrieval metric for an unanswerable
question, no citation metric for a refusal), so aggregates average only what applies.

>>> quote_in("the strategic  patience policy", "The Strategic patience\\u00a0policy failed.")
True
>>> key_fact_share([["2012"], ["satellite", "rocket"]], "A 2012 deal collapsed after a rocket launch.")
1.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rag.answering import (
    Passage,
    Verifier,
    markers_in,
    normalise,
    plain_brackets,
    split_claims,
    strip_markers,
)

KS: tuple[int, ...] = (1, 3, 5, 10)
# A quote cut by a chunk boundary still counts when one chunk holds this share of it. With the
# default 900/150 chunking the better half of a cut 250-character quote holds at least 70% of it.
MIN_QUOTE_SHARE = 0.67
# Below this length a partial quote ("2,495") means nothing: short quotes must match whole.
MIN_PARTIAL_QUOTE_CHARS = 40

Metrics = dict[str, float | None]


def quote_in(quote: str, text: str, min_share: float = MIN_QUOTE_SHARE) -> bool:
    """True when ``text`` holds the quote, or most of it (a chunk boundary may cut a quote).

    A chunk is a contiguous slice of its document, so the part of a cut quote it holds is a prefix
    or a suffix of the quote; the longest of each is found by bisection.
    """
    q, t = normalise(quote), normalise(text)
    if not q:
        return False
    if q in t:
        return True
    if len(q) < MIN_PARTIAL_QUOTE_CHARS:
        return False
    need = int(len(q) * min_share + 0.999)
    return _longest(lambda n: q[:n] in t, len(q)) >= need or _longest(lambda n: q[-n:] in t, len(q)) >= need


def _longest(holds: Callable[[int], bool], upper: int) -> int:
    lo, hi = 0, upper  # holds(lo) is true (empty string); find the largest n with holds(n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if holds(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# --- retrieval -------------------------------------------------------------------------------


def retrieval_metrics(
    item: Mapping[str, Any], ranking: Sequence[Mapping[str, Any]], ks: Sequence[int] = KS
) -> Metrics:
    """Per k: all gold sources in the top k; every evidence quote inside a top-k chunk of its
    source; reciprocal rank of the first chunk holding any evidence quote (0 beyond k).

    ``ranking`` is the retrieved list in rank order, each with ``source`` and ``text``.
    """
    sources: list[str] = list(item.get("sources") or [])
    evidence: list[str] = list(item.get("evidence") or [])
    out: Metrics = {}
    if not sources:
        for k in ks:
            out[f"retrieval.source@{k}"] = out[f"retrieval.evidence@{k}"] = out[f"retrieval.rr@{k}"] = None
        return out
    ranked_sources = [_base(str(r.get("source", ""))) for r in ranking]
    # Rank (1-based) at which each evidence quote is first found, in a chunk of its own source.
    quote_rank: list[int | None] = []
    for source, quote in zip(sources, evidence, strict=False):
        rank = next(
            (
                i
                for i, r in enumerate(ranking, start=1)
                if ranked_sources[i - 1] == _base(source) and quote_in(quote, str(r.get("text", "")))
            ),
            None,
        )
        quote_rank.append(rank)
    first = min((r for r in quote_rank if r is not None), default=None)
    for k in ks:
        top = set(ranked_sources[:k])
        out[f"retrieval.source@{k}"] = float(all(_base(s) in top for s in sources))
        out[f"retrieval.evidence@{k}"] = (
            float(all(r is not None and r <= k for r in quote_rank)) if evidence else None
        )
        rr = 1.0 / first if first is not None and first <= k else 0.0
        out[f"retrieval.rr@{k}"] = rr if evidence else None
    return out


def _base(source: str) -> str:
    """Golden sources are file names; the index may record paths relative to the corpus."""
    return source.replace("\\", "/").rsplit("/", 1)[-1]


# --- correctness -----------------------------------------------------------------------------


def key_fact_share(key_facts: Sequence[Sequence[str]], answer: str) -> float | None:
    """Share of key-fact groups with at least one alternative in the answer (case-insensitive)."""
    if not key_facts:
        return None
    text = normalise(strip_markers(answer))
    hits = sum(1 for group in key_facts if any(normalise(alt) in text for alt in group))
    return hits / len(key_facts)


def correctness_metrics(item: Mapping[str, Any], answer: Mapping[str, Any] | None) -> Metrics:
    if item.get("type") == "unanswerable" or not item.get("key_facts"):
        return {"correctness.facts": None, "correctness.correct": None}
    share = key_fact_share(item["key_facts"], str((answer or {}).get("answer", "")))
    correct = float(share == 1.0) if share is not None else None
    return {"correctness.facts": share, "correctness.correct": correct}


# --- citations -------------------------------------------------------------------------------


def answer_sentences(answer: Mapping[str, Any]) -> list[tuple[str, list[int]]]:
    """The answer's sentences with the passage numbers they cite (from the JSON when present)."""
    sentences = answer.get("sentences")
    if sentences:
        return [(str(s.get("text", "")), [int(n) for n in s.get("citations") or []]) for s in sentences]
    return [(s, markers_in(s)) for s in split_claims(str(answer.get("answer", "")))]


def citation_metrics(answer: Mapping[str, Any] | None) -> Metrics:
    """Every ``[n]`` points at a retrieved passage listed in ``citations``; share of cited sentences."""
    if not answer or answer.get("refused"):
        return {"citations.valid": None, "citations.sentence_share": None}
    retrieved = answer.get("retrieved") or []
    listed = {int(c.get("n", 0)) for c in answer.get("citations") or []}
    used = markers_in(str(answer.get("answer", "")))
    valid = all(1 <= n <= len(retrieved) and n in listed for n in used)
    sentences = answer_sentences(answer)
    share = sum(1 for _, cited in sentences if cited) / len(sentences) if sentences else 0.0
    return {"citations.valid": float(valid), "citations.sentence_share": share}


# --- faithfulness ----------------------------------------------------------------------------


class Judge(Protocol):
    """Decides whether a claim is supported by the passages it cites (None: cannot tell)."""

    name: str

    def supported(self, claim: str, passages: Sequence[Passage]) -> bool | None: ...


LABEL = re.compile(r": ")


class ExactJudge:
    """Extractive answers quote their passages, so support is checkable exactly: the sentence
    (minus its markers, and minus a ``Section: `` label the answerer puts before list items) is in
    the cited passage, up to whitespace; a document's own "[n]" may be quoted as "(n)", as the
    extractive answerer writes it (``plain_brackets``)."""

    name = "exact"

    def supported(self, claim: str, passages: Sequence[Passage]) -> bool | None:
        text = normalise(strip_markers(claim), casefold=False)
        if not text:
            return False
        candidates = [text] + [text[m.end() :] for m in LABEL.finditer(text) if text[m.end() :].strip()]
        # ``text`` has no "[n]" left: only the passage's "(n)" form can hold it.
        bodies = [normalise(plain_brackets(p.text), casefold=False) for p in passages]
        return any(c in body for c in candidates for body in bodies)


class VerifierJudge:
    """Any ``Verifier`` as a judge, e.g. ``rag.answering.llamacpp_judge(settings)``."""

    def __init__(self, verifier: Verifier, *, name: str) -> None:
        self.verifier = verifier
        self.name = name

    def supported(self, claim: str, passages: Sequence[Passage]) -> bool | None:
        return self.verifier(claim, passages)


def faithfulness_metrics(answer: Mapping[str, Any] | None, judge: Judge) -> Metrics:
    """Share of answer sentences supported by the passages they cite; uncited ones count as not."""
    if not answer or answer.get("refused"):
        return {"faithfulness": None, "faithfulness.undecided": None}
    retrieved = answer.get("retrieved") or []
    sentences = answer_sentences(answer)
    if not sentences:
        return {"faithfulness": 0.0, "faithfulness.undecided": 0.0}
    supported = undecided = 0
    for text, cited in sentences:
        passages = [_passage(retrieved[n - 1]) for n in cited if 1 <= n <= len(retrieved)]
        if not passages:
            continue
        verdict = judge.supported(text, passages)
        supported += verdict is True
        undecided += verdict is None
    return {"faithfulness": supported / len(sentences), "faithfulness.undecided": undecided / len(sentences)}


def _passage(data: Mapping[str, Any]) -> Passage:
    return Passage(
        chunk_id=str(data.get("chunk_id", "")),
        text=str(data.get("text", "")),
        # The title and section too: a quoted list item is shown with its heading
        # ("Military service age and obligation: 17 years of age"), which only they hold.
        metadata={
            "source": data.get("source", ""),
            "title": data.get("title") or data.get("source", ""),
            "section": data.get("section", ""),
        },
        similarity=float(data.get("score", 0.0) or 0.0),
    )


# --- refusals and latency --------------------------------------------------------------------


def refusal_metrics(item: Mapping[str, Any], answer: Mapping[str, Any] | None) -> Metrics:
    refused = bool((answer or {}).get("refused"))
    if item.get("type") == "unanswerable":
        return {"refusal.unanswerable_refused": float(refused), "refusal.answerable_refused": None}
    return {"refusal.unanswerable_refused": None, "refusal.answerable_refused": float(refused)}


def latency_metrics(answer: Mapping[str, Any] | None) -> Metrics:
    timings = (answer or {}).get("timings_ms") or {}
    return {
        "latency.total_ms": _float(timings.get("total")),
        "latency.first_token_ms": _float(timings.get("first_token")),
    }


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def score(
    item: Mapping[str, Any],
    answer: Mapping[str, Any] | None,
    ranking: Sequence[Mapping[str, Any]],
    judge: Judge,
    ks: Sequence[int] = KS,
) -> Metrics:
    """Every metric of one question. ``answer`` is None in retrieval-only runs."""
    out = retrieval_metrics(item, ranking, ks)
    if answer is None:
        return out
    out |= correctness_metrics(item, answer)
    out |= citation_metrics(answer)
    out |= faithfulness_metrics(answer, judge)
    out |= refusal_metrics(item, answer)
    out |= latency_metrics(answer)
    return out


# --- aggregates ------------------------------------------------------------------------------

LATENCY_PREFIX = "latency."
# Metrics where lower is better (the gate's "max" thresholds, the comparison's arrows).
LOWER_IS_BETTER = ("refusal.answerable_refused", "faithfulness.undecided", "latency.", "errors")


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def summarise(metrics: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Mean of each metric over the questions it applies to; p50/p95 for latencies."""
    names: list[str] = []
    for m in metrics:
        names += [k for k in m if k not in names]
    out: dict[str, float | None] = {"questions": float(len(metrics))}
    for name in names:
        values = [float(v) for m in metrics if (v := m.get(name)) is not None]
        if name.startswith(LATENCY_PREFIX):
            out[f"{name}.p50"] = percentile(values, 50)
            out[f"{name}.p95"] = percentile(values, 95)
        else:
            out[name] = sum(values) / len(values) if values else None
    return out


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Overall and per-``type`` summaries of result rows (each with ``type`` and ``metrics``)."""
    by_type: dict[str, list[Mapping[str, float | None]]] = {}
    for row in rows:
        by_type.setdefault(str(row.get("type", "")), []).append(row["metrics"])
    overall = summarise([row["metrics"] for row in rows])
    overall["errors"] = float(sum(1 for row in rows if row.get("error")))
    return {"overall": overall, "by_type": {t: summarise(ms) for t, ms in sorted(by_type.items())}}
