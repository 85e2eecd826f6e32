"""Latency and memory of the ``llamacpp`` answerer over golden questions, end to end.

    .venv/bin/python bench/llm_bench.py                 # 1.5B, 10 questions -> bench/llm_results.md
    .venv/bin/python bench/llm_bench.py --model 0.5b --out /tmp/r.md

Measures, per question, through the real answering API (``Assistant.stream``): time to the first
answer token, time to the final verified answer (generation plus the per-sentence judge), and
the process's peak RSS. One warm-up question (which pays for loading the model) is reported
apart and left out of the medians, as a server pays it once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import cpu_name  # noqa: E402 - needs the repository on sys.path first

# A mix of article, factbook, multi-passage, unanswerable and follow-up questions.
QUESTION_IDS = ["a01", "a04", "a08", "c02", "c06", "c11", "m03", "u02", "u06", "f03"]
WARMUP = "What is the capital of North Korea?"
TARGETS = {"first_token_p50_s": 2.5, "total_p50_s": 8.0, "peak_rss_gb": 3.5}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # ru_maxrss is KiB on Linux


def run_one(assistant: Any, question: str, history: list[dict[str, str]]) -> dict[str, Any]:
    from rag.answering import Answer, Delta

    t0 = time.perf_counter()
    first: float | None = None
    answer: Answer | None = None
    for event in assistant.stream(question, history):
        if isinstance(event, Delta) and event.text.strip() and first is None:
            first = time.perf_counter() - t0
        elif isinstance(event, Answer):
            answer = event
    total = time.perf_counter() - t0
    assert answer is not None
    return {
        "first_token_s": first if first is not None else total,
        "total_s": total,
        "generate_s": answer.timings_ms.get("answer", 0.0) / 1000,
        "mode": answer.mode,
        "refused": answer.refused,
        "sentences": len(answer.sentences),
        "supported": sum(1 for s in answer.sentences if s.supported),
        "answer": answer.answer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="1.5b", choices=["1.5b", "0.5b"])
    parser.add_argument("--questions", type=int, default=len(QUESTION_IDS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "llm_results.md")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".rag")
    args = parser.parse_args()

    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)

    from rag.answering import open_assistant
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings
    from rag.index.ingest import ingest

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        corpus_dir=REPO / "corpus",
        data_dir=args.data_dir,
        answerer="llamacpp",
        llm_model=args.model,
    )
    embeddings = build_embeddings(settings)
    ingest(settings, lambda: embeddings)  # a no-op when the index is current
    golden = {
        row["id"]: row
        for row in (
            json.loads(line) for line in (REPO / "evals" / "golden.jsonl").read_text().splitlines() if line
        )
    }
    rows = [golden[i] for i in QUESTION_IDS[: args.questions]]

    load_start = os.getloadavg()[0]
    t_build = time.perf_counter()
    assistant = open_assistant(settings, embeddings=embeddings)
    build_s = time.perf_counter() - t_build
    warm = run_one(assistant, WARMUP, [])
    results = []
    for row in rows:
        result = run_one(assistant, row["question"], row.get("history") or [])
        result["id"] = row["id"]
        results.append(result)
        print(
            f"{row['id']}: first {result['first_token_s']:.2f}s total {result['total_s']:.2f}s"
            f" {result['mode']} {result['supported']}/{result['sentences']} supported"
            f" | {result['answer'][:100]!r}",
            flush=True,
        )

    first_p50 = statistics.median(r["first_token_s"] for r in results)
    total_p50 = statistics.median(r["total_s"] for r in results)
    rss = peak_rss_gb()
    figures = {"first_token_p50_s": first_p50, "total_p50_s": total_p50, "peak_rss_gb": rss}
    met = {k: figures[k] <= TARGETS[k] for k in TARGETS}
    try:
        import llama_cpp

        llama_version = llama_cpp.__version__
    except ImportError:  # pragma: no cover - the bench needs it anyway
        llama_version = "?"

    lines = [
        f"# llamacpp answerer benchmark ({args.model})",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores visible, llm_threads={settings.llm_threads},"
        f" Python {platform.python_version()}, llama-cpp-python {llama_version}",
        f"- Model: {settings.llm_model} ({settings.models_dir.name}/…), n_ctx={settings.llm_context},"
        f" max_tokens={settings.llm_max_tokens}",
        f"- Questions: {len(results)} from evals/golden.jsonl ({', '.join(r['id'] for r in results)}),"
        " through `Assistant.stream` (retrieval + generation + per-sentence verification).",
        f"- Load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} on"
        f" {os.cpu_count()} cores: other jobs on the machine slow llama.cpp's threads a lot.",
        f"- Assistant build (model hash check via stamp): {build_s:.2f} s; warm-up question (loads the"
        f" model): first token {warm['first_token_s']:.2f} s, total {warm['total_s']:.2f} s.",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        f"| first token p50 | {first_p50:.2f} s | ≤ {TARGETS['first_token_p50_s']} s |"
        f" {'yes' if met['first_token_p50_s'] else 'no'} |",
        f"| full answer p50 | {total_p50:.2f} s | ≤ {TARGETS['total_p50_s']} s |"
        f" {'yes' if met['total_p50_s'] else 'no'} |",
        f"| peak RSS (whole process, embeddings included) | {rss:.2f} GB | ≤ {TARGETS['peak_rss_gb']} GB |"
        f" {'yes' if met['peak_rss_gb'] else 'no'} |",
        "",
        "| id | first token (s) | full answer (s) | mode | supported / sentences | answer |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        text = r["answer"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['id']} | {r['first_token_s']:.2f} | {r['total_s']:.2f} | {r['mode']}"
            f"{' (refused)' if r['refused'] else ''} | {r['supported']}/{r['sentences']} | {text[:160]} |"
        )
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[8:12]))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
