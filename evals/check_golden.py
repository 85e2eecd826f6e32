#!/usr/bin/env python3
"""Validate a golden question file against the corpus (the rules live in ``rag.evaluation.harness``).

Usage: python evals/check_golden.py [path/to/golden.jsonl] [path/to/corpus]

Exit status 1 when any item breaks a rule; ``tests/test_golden.py`` runs the same checks in CI.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from rag.evaluation.harness import TYPES, golden_problems, read_corpus

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    golden = Path(argv[1]) if len(argv) > 1 else HERE / "golden.jsonl"
    corpus = read_corpus(Path(argv[2]) if len(argv) > 2 else HERE.parent / "corpus")
    items = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]
    errors = [
        f"{item.get('id', n)}: {problem}"
        for n, item in enumerate(items, 1)
        for problem in golden_problems(item, corpus)
    ]
    ids = Counter(item.get("id") for item in items)
    errors += [f"{i}: duplicate id" for i, c in ids.items() if c > 1]
    counts = Counter(item.get("type") for item in items)
    cited = {s for item in items for s in item.get("sources", [])}
    print(f"{len(items)} items in {golden}")
    print("type counts: " + ", ".join(f"{t}={counts.get(t, 0)}" for t in TYPES))
    print(f"corpus documents cited: {len(cited & set(corpus))}/{len(corpus)}")
    for e in errors:
        print("ERROR", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
