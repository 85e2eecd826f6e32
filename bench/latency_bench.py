"""Retrieval and answer latency over the golden questions, on an index of the default corpus.

Retrieval is ``HybridRetriever.invoke`` as the chain calls it (question embedding, Chroma
query, BM25, fusion), timed per question; the question embedding alone is timed too. The
extractive answer is ``Assistant.ask`` end to end (condense, retrieval, sentence ranking,
citations) from ``rag.answering.open_assistant``, follow-up questions with their history.
A warm-up pass (model and index caches) is left out of the figures.

Worker use (prints one JSON line)::

    python -m bench.latency_bench --data DIR [--passes 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from bench.common import CORPUS, golden, loadavg, now_iso, offline, summary_ms


def measure(data: Path, passes: int, limit: int | None) -> dict[str, Any]:
    from rag.answering.assistant import open_assistant, open_index
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings

    settings = Settings(_env_file=None, corpus_dir=CORPUS, data_dir=data)  # type: ignore[call-arg]
    rows = golden(limit)
    questions = [r["question"] for r in rows]
    result: dict[str, Any] = {"date": now_iso(), "loadavg_before": loadavg(), "questions": len(rows)}

    started = time.perf_counter()
    embeddings = build_embeddings(settings)
    assistant = open_assistant(settings, embeddings=embeddings)
    result["build_assistant_s"] = round(time.perf_counter() - started, 2)
    index = open_index(settings, embeddings)
    retriever = index.retriever(embeddings, settings)
    result["chunks"] = index.chunks

    for q in questions:  # warm-up: first calls pay for lazy initialisation
        retriever.invoke(q, k=settings.top_k)
    embed_times: list[float] = []
    retrieve_times: list[float] = []
    for _ in range(passes):
        for q in questions:
            t0 = time.perf_counter()
            embeddings.embed_query(q)
            embed_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            retriever.invoke(q, k=settings.top_k)
            retrieve_times.append(time.perf_counter() - t0)
    result["embed_query"] = summary_ms(embed_times)
    result["retrieval"] = summary_ms(retrieve_times)

    assistant.ask(questions[0])
    answer_times: list[float] = []
    stages: dict[str, list[float]] = {}
    refused = 0
    for row in rows:
        t0 = time.perf_counter()
        answer = assistant.ask(row["question"], row.get("history") or [])
        answer_times.append(time.perf_counter() - t0)
        refused += int(answer.refused)
        for stage, ms in answer.timings_ms.items():
            stages.setdefault(stage, []).append(ms / 1000)
    result["answer_extractive"] = summary_ms(answer_times)
    result["answer_stages_p50_ms"] = {k: summary_ms(v)["p50_ms"] for k, v in stages.items()}
    result["answer_refused"] = refused
    # ru_maxrss is KiB on Linux: this process holds the model, the index and the chain.
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["loadavg_after"] = loadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data dir of a built index")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    offline()
    print(json.dumps(measure(args.data, args.passes, args.limit)))


if __name__ == "__main__":
    main()
