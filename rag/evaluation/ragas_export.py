"""The eval's answers in the shape RAGAS reads, so its metrics can be run on them too.

One JSON line per question in RAGAS's single-turn sample schema: ``user_input`` (the question as
asked; a follow-up carries its history in ``history``, which RAGAS ignores), ``retrieved_contexts``
(the passages the answer was made from, best first), ``response`` (the answer without its
``[n]`` markers), ``reference`` (the golden answer) and ``reference_contexts`` (the golden
evidence quotes). The harness's own figures stay the gate; this is for people who compare
systems with RAGAS.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rag.answering import strip_markers


def ragas_sample(row: Mapping[str, Any], top_k: int, evidence: list[str] | None = None) -> dict[str, Any]:
    """The RAGAS single-turn sample of one results row (``results.jsonl``).

    >>> row = {"question": "Who?", "reference": "Ann.", "answer": {"answer": "Ann wrote it [1].",
    ...        "retrieved": [{"text": "Ann wrote it."}, {"text": "Bob read it."}]}}
    >>> ragas_sample(row, top_k=1, evidence=["Ann wrote it"])["retrieved_contexts"]
    ['Ann wrote it.']
    >>> ragas_sample(row, top_k=1)["response"]
    'Ann wrote it.'
    """
    answer = row.get("answer") or {}
    return {
        "user_input": str(row.get("question", "")),
        "retrieved_contexts": [str(p.get("text", "")) for p in (answer.get("retrieved") or [])[:top_k]],
        "response": strip_markers(str(answer.get("answer", ""))).strip(),
        "reference": str(row.get("reference") or ""),
        "reference_contexts": list(evidence or []),
    }


def write_ragas(
    out: Path, rows: Iterable[Mapping[str, Any]], items: Mapping[str, Mapping[str, Any]], top_k: int
) -> list[Path]:
    """Write ``ragas-<answerer>.jsonl`` in ``out`` for each answerer in ``rows``; ``items`` are the
    question file's lines by id (for their evidence)."""
    by_answerer: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("error") or not row.get("answer"):
            continue
        evidence = list((items.get(str(row.get("id"))) or {}).get("evidence") or [])
        by_answerer.setdefault(str(row.get("answerer")), []).append(ragas_sample(row, top_k, evidence))
    written = []
    for name, samples in by_answerer.items():
        path = out / f"ragas-{name}.jsonl"
        path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
        written.append(path)
    return written
