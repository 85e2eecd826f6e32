"""The eval's RAGAS export: the schema, on the fake chain; and RAGAS itself reading it and
scoring it with its non-LLM metrics, in the separate environment `make ragas` builds (RAGAS
pins versions of openai, typer and rich that the app's cannot share)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rag.config import Settings
from tests.test_eval import GOLDEN, golden, run, settings  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
RAGAS_PYTHON = Path(os.environ.get("RAG_RAGAS_PYTHON", REPO / ".venv-ragas" / "bin" / "python"))
KEYS = {"user_input", "retrieved_contexts", "response", "reference", "reference_contexts"}


def exported(settings: Settings, golden: Path, out: Path) -> list[dict[str, object]]:  # noqa: F811
    code, said = run(settings, golden, out)
    assert code == 0, "\n".join(said)
    lines = (out / "ragas-extractive.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_the_eval_writes_one_ragas_sample_per_answered_question(
    settings: Settings, golden: Path, tmp_path: Path  # noqa: F811
) -> None:
    samples = exported(settings, golden, tmp_path / "out")
    results = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(samples) == len(results) == len(GOLDEN)
    for sample, row in zip(samples, results, strict=True):
        assert set(sample) == KEYS
        assert sample["user_input"] == row["question"] and sample["reference"] == row["reference"]
        assert "[" not in str(sample["response"])  # citation markers dropped
        texts = [p["text"] for p in row["answer"]["retrieved"][: settings.top_k]]
        assert sample["retrieved_contexts"] == texts
    by_question = {str(i["question"]): i for i in GOLDEN}
    for s in samples:
        assert s["reference_contexts"] == by_question[str(s["user_input"])].get("evidence", [])


RAGAS_SCRIPT = """
import json, sys
from ragas import EvaluationDataset
from ragas.metrics import NonLLMContextRecall, NonLLMStringSimilarity
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
data = EvaluationDataset.from_list(rows)
recall, similarity = NonLLMContextRecall(), NonLLMStringSimilarity()
out = []
for sample in data.samples:
    out.append([recall.single_turn_score(sample) if sample.reference_contexts else None,
                similarity.single_turn_score(sample)])
print(json.dumps(out))
"""


@pytest.mark.integration
def test_ragas_reads_the_export_and_scores_it_without_an_llm(
    settings: Settings, golden: Path, tmp_path: Path  # noqa: F811
) -> None:
    if not RAGAS_PYTHON.exists():
        if os.environ.get("RAG_REQUIRE_EXTRAS") == "1":
            pytest.fail(f"{RAGAS_PYTHON} is missing: run `make ragas`")
        pytest.skip("no RAGAS environment (make ragas)")
    samples = exported(settings, golden, tmp_path / "out")
    done = subprocess.run(
        [str(RAGAS_PYTHON), "-c", RAGAS_SCRIPT, str(tmp_path / "out" / "ragas-extractive.jsonl")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAGAS_DO_NOT_TRACK": "true"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(scores) == len(samples)
    for (recall, similarity), sample in zip(scores, samples, strict=True):
        assert 0.0 <= similarity <= 1.0
        if sample["reference_contexts"]:
            assert 0.0 <= recall <= 1.0
    # an answer that quotes its passage scores higher against the passage than a refusal does
    assert max(s for _, s in scores) > min(s for _, s in scores)
