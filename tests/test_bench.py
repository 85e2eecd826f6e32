"""The benchmark helpers: percentiles, target checks, the synthetic data, the results file.

Only the logic is tested here (fast, no model); the benchmarks themselves run with `make bench`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import report
from bench.common import percentile, summary_ms
from bench.scale_bench import Synthetic

REPO = Path(__file__).resolve().parent.parent


def test_percentile_matches_numpy() -> None:
    values = [0.3, 12.0, 4.5, 7.25, 1.0, 99.0, 3.0]
    for q in (0, 10, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_is_in_milliseconds() -> None:
    got = summary_ms([0.010, 0.020, 0.030])
    assert got == {"n": 3, "p50_ms": 20.0, "p95_ms": 29.0, "mean_ms": 20.0, "max_ms": 30.0}


def _results(**over: object) -> dict[str, object]:
    results: dict[str, object] = {
        "ingest": {
            "speedup_chunks_per_s": 5.2,
            "reingest_cli": {"seconds": 2.4},
            "ours": {"reingest_in_process_s": 0.02},
            "agreement_bf16_fp32": {"mean_cosine": 0.9999},
            "eval_delta": {"source@1": 0.0, "evidence@5": -0.0156},
        },
        "latency": {"retrieval": {"p50_ms": 9.0, "p95_ms": 31.0}, "answer_extractive": {"p50_ms": 120.0}},
        "scale": {
            "points": [
                {"chunks": 10_000, "query": {"p50_ms": 5.0}},
                {"chunks": 100_000, "query": {"p50_ms": 41.0}},
            ]
        },
    }
    results.update(over)
    return results


def test_targets_are_judged_in_the_right_direction() -> None:
    rows = {r["target"]: r for r in report.check_targets(_results())}
    assert rows["Ingest throughput vs the LangChain peer (chunks/s ratio)"]["met"] is True
    assert rows["Re-ingest, nothing changed: `rag ingest` wall time"]["met"] is False
    assert rows["Retrieval p50 (default corpus)"]["met"] is True
    assert rows["Retrieval p95 (default corpus)"]["met"] is False
    assert rows["Retrieval eval, worst metric change vs fp32 index"]["value"] == -0.0156
    assert rows["Retrieval eval, worst metric change vs fp32 index"]["met"] is True
    assert rows["Chroma server query p50 at 100k chunks"]["value"] == 41.0
    assert rows["Chroma server query p50 at 100k chunks"]["met"] is False


def test_a_section_not_run_is_reported_as_not_measured() -> None:
    rows = {r["target"]: r for r in report.check_targets(_results(app=None))}
    row = rows["App ready from a cold start (index built)"]
    assert row["value"] is None and row["met"] is None


def test_synthetic_chunks_are_deterministic_and_unit_length() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 384)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    texts = [
        "alpha beta gamma delta " * 10,
        "epsilon zeta eta theta " * 6,
        "iota kappa " * 30,
        "lambda " * 25,
        "mu " * 40,
    ]
    gen = Synthetic(base, texts)
    ids, vecs, docs, metas = gen.batch(100, 110)
    ids2, vecs2, docs2, _ = Synthetic(base, texts).batch(100, 110)
    assert ids == ids2 == [f"syn-{i:07d}" for i in range(100, 110)]
    assert docs == docs2 and np.array_equal(vecs, vecs2)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # Each vector stays near one of the real ones (noise of norm 0.5: cosine about 0.9).
    best = (vecs @ base.T).max(axis=1)
    assert best.min() > 0.8
    assert [m["chunk_id"] for m in metas] == ids
    assert all(set(d.split()) <= set(gen.vocab) for d in docs)


def test_committed_results_md_is_rendered_from_results_json() -> None:
    path = REPO / "bench" / "results.json"
    if not path.exists():
        pytest.skip("no committed benchmark results yet")
    results = json.loads(path.read_text())
    targets = report.check_targets(results)
    assert targets == results["targets"]
    plot = report.PLOT_NAME if (REPO / "bench" / report.PLOT_NAME).exists() else None
    assert report.render(results, targets, plot) == (REPO / "bench" / "RESULTS.md").read_text()


def test_docstring_examples() -> None:
    import doctest

    from bench import common

    for module in (common, report):
        assert doctest.testmod(module).failed == 0
