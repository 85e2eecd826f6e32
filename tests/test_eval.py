"""The eval harness end to end on the small fake corpus: report files, comparison, and a gate that
passes on the real chain and fails when a broken retriever is swapped in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from rag.answering import Assistant
from rag.answering.assistant import open_index
from rag.answering.chain import build_chain, build_retrieval
from rag.answering.extractive import ExtractiveAnswerer
from rag.config import Settings
from rag.evaluation.harness import GoldenError, Pipeline, answerer_settings, evaluate, load_questions, run_cli
from rag.evaluation.metrics import ExactJudge
from rag.evaluation.report import check_gate, compare_markdown, load_thresholds
from rag.retrieval import HybridRetriever
from tests.fakes import HashingEmbeddings

REPO = Path(__file__).resolve().parent.parent

GOLDEN = [
    {
        "id": "a1",
        "type": "article",
        "question": "Which policy proved to be an immense failure?",
        "history": [],
        "answer": "Strategic patience.",
        "key_facts": [["strategic patience"]],
        "sources": ["article.md"],
        "evidence": ["The strategic patience policy has proved to be an immense failure."],
    },
    {
        "id": "a2",
        "type": "article",
        "question": "What share of North Korea's trade does China account for?",
        "history": [],
        "answer": "70 percent.",
        "key_facts": [["70 percent"]],
        "sources": ["article.md"],
        "evidence": ["China accounts for 70 percent of North Korea's trade."],
    },
    {
        "id": "c1",
        "type": "corpus",
        "question": "How long is the North Korean coastline?",
        "history": [],
        "answer": "2,495 km.",
        "key_facts": [["2,495"]],
        "sources": ["factbook.md"],
        "evidence": ["2,495 km"],
    },
    {
        "id": "u1",
        "type": "unanswerable",
        "question": "What is the capital of Mongolia?",
        "history": [],
        "answer": "Not in the documents.",
        "key_facts": [],
        "sources": [],
        "evidence": [],
    },
    {
        "id": "f1",
        "type": "followup",
        "question": "When is it eaten?",
        "history": [
            {"role": "user", "content": "What is kimchi?"},
            {"role": "assistant", "content": "A fermented vegetable dish."},
        ],
        "answer": "With most meals.",
        "key_facts": [["meals"]],
        "sources": ["notes.txt"],
        "evidence": ["It is eaten with most meals."],
    },
]

THRESHOLDS = {
    "_about": "test thresholds, just under what the fake chain measures",
    "extractive": {
        "min": {
            "retrieval.evidence@5": 0.95,
            "retrieval.rr@10": 0.7,
            "correctness.correct": 0.95,
            "faithfulness": 0.95,
            "refusal.unanswerable_refused": 0.95,
        },
        "max": {"refusal.answerable_refused": 0.05},
    },
}


class IrrelevantRetriever(BaseRetriever):
    """A deliberately broken retriever: whatever the question, it returns passages about kimchi."""

    inner: HybridRetriever

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        return self.inner.invoke("kimchi fermented vegetable dish", **options)


def fake_pipeline(settings: Settings, name: str, embeddings: Any, *, broken: bool = False) -> Pipeline:
    index = open_index(settings, embeddings)
    retriever: Any = HybridRetriever(
        collection=index.collection, embeddings=embeddings, lexical=index.lexical, settings=settings
    )
    if broken:
        retriever = IrrelevantRetriever(inner=retriever)
    answerer = ExtractiveAnswerer(embeddings, min_score=0.1)
    chain = build_chain(retriever=retriever, answerer=answerer, settings=settings)
    retrieval = build_retrieval(retriever=retriever, settings=settings)
    return Pipeline(name, Assistant(chain, retrieval=retrieval), ExactJudge(), model="fake extractive")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The fake corpus plus a shelf of recipes, so that irrelevant passages can fill a top 5."""
    for i in range(8):
        (settings.corpus_dir / f"recipe{i}.txt").write_text(
            f"Recipe {i}. Kimchi is a fermented vegetable dish. Kimchi uses cabbage, radish and chili"
            f" pepper number {i}.\n",
            encoding="utf-8",
        )
    return settings


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in GOLDEN), encoding="utf-8")
    return path


@pytest.fixture
def thresholds(tmp_path: Path) -> Path:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(THRESHOLDS), encoding="utf-8")
    return path


def run(settings: Settings, golden: Path, out: Path, **kwargs: Any) -> tuple[int, list[str]]:
    said: list[str] = []
    broken = kwargs.pop("broken", False)
    code = run_cli(
        settings,
        questions=golden,
        out=out,
        embeddings_factory=HashingEmbeddings,
        pipeline_factory=lambda s, n, e: fake_pipeline(s, n, e, broken=broken),
        echo=said.append,
        **kwargs,
    )
    return code, said


def test_the_gate_passes_on_the_real_chain_and_fails_with_a_broken_retriever(
    settings: Settings, golden: Path, thresholds: Path, tmp_path: Path
) -> None:
    code, said = run(settings, golden, tmp_path / "good", gate=thresholds)
    assert code == 0, "\n".join(said)
    assert any("eval gate passed (6 thresholds)" in line for line in said)

    code, said = run(settings, golden, tmp_path / "broken", gate=thresholds, broken=True)
    assert code == 1
    failed = next(line for line in said if line.startswith("eval gate FAILED"))
    assert "retrieval.evidence@5" in failed and "correctness.correct" in failed
    # The failing values are the ones in the written report.
    report = json.loads((tmp_path / "broken" / "report.json").read_text())
    assert report["answerers"]["extractive"]["overall"]["retrieval.evidence@5"] < 0.95


def test_the_report_folder_holds_results_report_and_plots(
    settings: Settings, golden: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, _ = run(settings, golden, out, answerers=["extractive"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [item["id"] for item in GOLDEN]
    first = rows[0]
    assert first["answer"]["citations"] and first["metrics"]["correctness.correct"] == 1.0
    assert first["metrics"]["retrieval.evidence@1"] == 1.0 and first["judge"] == "exact"
    assert rows[3]["answer"]["refused"] and rows[3]["metrics"]["refusal.unanswerable_refused"] == 1.0
    assert rows[4]["standalone_question"].startswith("What is kimchi?")
    # The ranking scored is the one the answer came from, 10 deep, follow-ups included.
    for row in rows:
        assert [r["chunk_id"] for r in row["ranking"]] == [p["chunk_id"] for p in row["answer"]["retrieved"]]
        assert len(row["ranking"]) == 10

    report = json.loads((out / "report.json").read_text())
    assert {"date", "machine", "settings", "models", "answerers", "questions"} <= set(report)
    assert report["settings"]["openai_api_key"] == "**********"
    run_ = report["answerers"]["extractive"]
    assert set(run_["by_type"]) == {"article", "corpus", "unanswerable", "followup"}
    assert run_["overall"]["questions"] == 5.0
    assert run_["overall"]["latency.total_ms.p95"] >= run_["overall"]["latency.total_ms.p50"] > 0

    md = (out / "report.md").read_text()
    assert "| retrieval.evidence@5 |" in md and "The 10 worst questions" in md
    assert "**u1**" in md and "[1] article.md" in md
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == [
        "extractive-latency.png",
        "extractive-metrics-by-type.png",
        "extractive-retrieval-at-k.png",
    ]
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_compare_shows_the_change_against_an_earlier_report(
    settings: Settings, golden: Path, tmp_path: Path
) -> None:
    assert run(settings, golden, tmp_path / "base", answerers=["extractive"])[0] == 0
    code, _ = run(settings, golden, tmp_path / "new", answerers=["extractive"], compare=tmp_path / "base")
    assert code == 0
    text = (tmp_path / "new" / "compare.md").read_text()
    assert "| correctness.correct | 1.000 | 1.000 | = |" in text

    base = json.loads((tmp_path / "base" / "report.json").read_text())
    worse = json.loads(json.dumps(base))
    worse["answerers"]["extractive"]["overall"]["correctness.correct"] = 0.8
    worse["settings"]["top_k"] = 3
    text = compare_markdown(base, worse)
    assert "| correctness.correct | 1.000 | 0.800 | -0.200 ▼ |" in text
    assert "top_k 5 → 3" in text


def test_retrieval_only_skips_answering(
    settings: Settings, golden: Path, thresholds: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    code, said = run(settings, golden, out, retrieval_only=True, gate=thresholds)
    assert code == 0, said
    assert any("eval gate passed (2 thresholds)" in line for line in said)  # only retrieval.* ones
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["answer"] is None and r["answerer"] == "retrieval-only" for r in rows)
    assert rows[4]["standalone_question"].startswith("What is kimchi?")  # follow-ups are condensed
    overall = json.loads((out / "report.json").read_text())["answerers"]["retrieval-only"]["overall"]
    assert overall["retrieval.evidence@5"] == 1.0 and "correctness.correct" not in overall
    assert overall["latency.retrieve_ms.p50"] > 0


def test_gate_fails_on_a_metric_it_cannot_find() -> None:
    report = {"answerers": {"extractive": {"overall": {"faithfulness": 1.0}}}}
    failures, checked = check_gate(report, {"extractive": {"min": {"faithfulness": 0.9, "nonsense": 0.1}}})
    assert checked == 2 and failures == ["extractive: nonsense was not measured (needs min 0.1)"]
    failures, _ = check_gate(report, {"openai": {"min": {"faithfulness": 0.5}}})
    assert failures == ["openai: not evaluated (thresholds exist for it)"]


def test_usage_errors_exit_2(settings: Settings, golden: Path, tmp_path: Path) -> None:
    assert run(settings, tmp_path / "missing.jsonl", tmp_path / "o")[0] == 2
    assert run(settings, golden, tmp_path / "o", answerers=["gpt-9"])[0] == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"extractive": {"min": {"faithfulness": "high"}}}')
    assert run(settings, golden, tmp_path / "o", gate=bad)[0] == 2
    with pytest.raises(ValueError, match="must hold"):
        load_thresholds(_write(tmp_path / "t.json", {"extractive": {"least": {}}}))


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_other_question_files_need_only_a_question(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "Who?"}\n\n{"question": "Why?", "id": "x"}\n')
    items = load_questions(path)
    assert [i["id"] for i in items] == ["q1", "x"]
    assert items[0]["history"] == [] and items[0]["sources"] == []
    assert len(load_questions(path, limit=1)) == 1
    path.write_text('{"q": 1}\n')
    with pytest.raises(GoldenError, match=r"mine\.jsonl:1"):
        load_questions(path)


def test_answerer_names(settings: Settings) -> None:
    assert answerer_settings(settings, "llamacpp-0.5b").llm_model == "0.5b"
    assert answerer_settings(settings, "extractive").answerer == "extractive"
    with pytest.raises(ValueError, match="RAG_OPENAI_BASE_URL"):
        answerer_settings(settings, "openai")
    with pytest.raises(ValueError, match="unknown"):
        answerer_settings(settings, "extractive-2b")


def test_a_failing_question_is_a_result_not_a_crash(settings: Settings) -> None:
    from rag.index.ingest import ingest

    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    pipeline = fake_pipeline(settings, "extractive", embeddings)
    rows = evaluate([{**GOLDEN[0], "question": " "}], pipeline)  # empty question: QuestionError
    assert rows[0]["error"].startswith("QuestionError")
    assert rows[0]["metrics"]["correctness.correct"] == 0.0


@pytest.mark.parametrize(
    ("thresholds", "baseline"),
    # Every committed gate: thresholds.json (golden) and thresholds-<set>.json, each with its baseline.
    [
        (p.name, p.stem.replace("thresholds", "baseline", 1))
        for p in sorted((REPO / "evals").glob("thresholds*.json"))
    ],
)
def test_the_committed_thresholds_sit_under_the_committed_baseline(thresholds: str, baseline: str) -> None:
    limits = load_thresholds(REPO / "evals" / thresholds)
    report = json.loads((REPO / "evals" / baseline / "report.json").read_text())
    failures, checked = check_gate(report, limits)
    assert failures == [] and checked >= 10


@pytest.mark.integration
def test_rag_eval_command_on_the_real_index(
    real_index: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    monkeypatch.setenv("RAG_CORPUS_DIR", str(real_index.corpus_dir))
    monkeypatch.setenv("RAG_DATA_DIR", str(real_index.data_dir))
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(real_index.models_dir))
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app, ["eval", "--retrieval-only", "--limit", "10", "--out", str(out), "--questions",
              str(REPO / "evals" / "golden.jsonl")]
    )
    assert result.exit_code == 0, result.output
    overall = json.loads((out / "report.json").read_text())["answerers"]["retrieval-only"]["overall"]
    assert overall["questions"] == 10.0
    assert overall["retrieval.source@10"] >= 0.7  # the first ten are article questions


def test_the_report_counts_outcomes_per_type_and_lists_answered_unanswerables() -> None:
    from rag.evaluation.report import outcomes

    def row(qid: str, kind: str, answer: str, *, refused: bool = False, correct: float | None = None) -> dict:  # type: ignore[type-arg]
        return {
            "id": qid,
            "type": kind,
            "question": f"question {qid}?",
            "answer": {"answer": answer, "refused": refused},
            "metrics": {"correctness.correct": correct},
            "error": None,
        }

    lines = outcomes(
        [
            row("a1", "article", "right", correct=1.0),
            row("a2", "article", "half", correct=0.0),
            row("a3", "article", "I could not find that.", refused=True),
            row("u1", "unanswerable", "I could not find that.", refused=True),
            row("u2", "unanswerable", "Some unrelated quote [1]"),
        ]
    )
    text = "\n".join(lines)
    assert "| article | 3 | 1 | 1 | 1 | 0 |" in text
    assert "| unanswerable | 2 | 1 | 1 | – | 0 |" in text
    assert "Unanswerable questions that were answered (1)" in text
    assert "**u2**" in text and "Some unrelated quote [1]" in text and "**u1**" not in text
