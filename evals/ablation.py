"""Retrieval ablation: each lever on and off, in one run, on the same question file.

    .venv/bin/python evals/ablation.py [--questions evals/golden.jsonl] [--out evals/ablation]

Each variant is ``rag eval --retrieval-only`` with one setting changed through its ``RAG_*``
variable. Variants that change what is indexed (chunking, embedded context) get their own data
directory, so the main index is left alone. Writes ``OUT/ablation.md`` and ``OUT/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

# name -> (settings changed, needs its own index)
VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "defaults": ({}, False),
    "dense only (hybrid off)": ({"RAG_HYBRID": "false"}, False),
    "BM25 weight 1.5": ({"RAG_BM25_WEIGHT": "1.5"}, False),
    "BM25 weight 3.0": ({"RAG_BM25_WEIGHT": "3.0"}, False),
    "follow-up condensing off": ({"RAG_CONDENSE": "false"}, False),
    "MMR on (lambda 0.7)": ({"RAG_MMR": "true"}, False),
    "max 2 passages per file": ({"RAG_MAX_PER_SOURCE": "2"}, False),
    "route to named documents": ({"RAG_ROUTE_DOCUMENTS": "true"}, False),
    "'the article' not routed to bylined files": ({"RAG_ROUTE_AUTHORED": "false"}, False),
    "multi-part questions not split": ({"RAG_SPLIT_QUESTIONS": "false"}, False),
    "documents whose title is spelled out not kept": ({"RAG_RESERVE_TITLED": "false"}, False),
    "typos not corrected": ({"RAG_CORRECT_SPELLING": "false"}, False),
    "embedded context: title (8 words), no byline": ({"RAG_EMBED_CONTEXT": "title"}, True),
    "embedded context: section only": ({"RAG_EMBED_CONTEXT": "section"}, True),
    "embedded context: none": ({"RAG_EMBED_CONTEXT": "none"}, True),
    "chunks 500/60": ({"RAG_CHUNK_SIZE": "500", "RAG_CHUNK_OVERLAP": "60"}, True),
    "chunks 800/100": ({"RAG_CHUNK_SIZE": "800", "RAG_CHUNK_OVERLAP": "100"}, True),
    "chunks 1200/150": ({"RAG_CHUNK_SIZE": "1200", "RAG_CHUNK_OVERLAP": "150"}, True),
}
METRICS = [
    "retrieval.source@5",
    "retrieval.evidence@5",
    "retrieval.evidence@10",
    "retrieval.rr@10",
    "latency.retrieve_ms.p50",
]


def run_variant(name: str, env: dict[str, str], own_index: bool, questions: Path, out: Path) -> dict:
    run_env = dict(os.environ, **env)
    slug = "".join(ch if ch.isalnum() else "_" for ch in name)
    if own_index:
        run_env["RAG_DATA_DIR"] = str(Path(tempfile.gettempdir()) / f"rag-ablation-{slug}")
    folder = out / "runs" / slug
    rag = Path(sys.executable).with_name("rag")
    cmd = [str(rag), "eval", "--retrieval-only", "--questions", str(questions), "--out", str(folder)]
    subprocess.run(cmd, env=run_env, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((folder / "report.json").read_text())
    overall = report["answerers"]["retrieval-only"]["overall"]
    return {"settings": env, "metrics": {m: overall.get(m) for m in METRICS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=Path("evals/golden.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("evals/ablation"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, (env, own_index) in VARIANTS.items():
        print(f"ablation: {name}", flush=True)
        results[name] = run_variant(name, env, own_index, args.questions, args.out)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    (args.out / "ablation.json").write_text(
        json.dumps({"date": stamp, "load_average": load, "variants": results}, indent=1)
    )
    lines = [
        "# Retrieval ablation",
        "",
        f"{stamp}, {os.cpu_count()} CPUs, load average {load:.1f} at the end; questions"
        f" `{args.questions}`. One lever changed per row against the defaults.",
        "",
        "| variant | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, row in results.items():
        cells = []
        for metric in METRICS:
            value = row["metrics"][metric]
            cells.append("–" if value is None else (f"{value:.0f} ms" if "ms" in metric else f"{value:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
