"""The same question gives the same passages and the same answer: whatever batch a text was
embedded in, whether the index was built at once or updated file by file, in another process,
on fewer cores, or beside a CPU-bound neighbour. Without this no eval figure can be compared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.answering import open_assistant
from rag.config import Settings
from rag.index.ingest import ingest
from tests.conftest import REPO, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTIONS = [
    "What policy does the author call an immense failure?",
    "How long is North Korea's coastline?",
    "Who was running the IAEA when Jimmy Carter made his private trip to North Korea?",
    "Which countries founded KEDO?",
    "What does the Missile Technology Control Regime restrict?",
]
TOLERANCE = 1e-6


def _rankings(answers: list[dict[str, object]]) -> list[list[tuple[str, float]]]:
    return [[(str(r["chunk_id"]), float(r["score"])) for r in a["retrieved"]] for a in answers]  # type: ignore[attr-defined]


def _assert_same(first: list[dict[str, object]], second: list[dict[str, object]]) -> None:
    for a, b in zip(_rankings(first), _rankings(second), strict=True):
        assert [cid for cid, _ in a] == [cid for cid, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=TOLERANCE, rtol=0)
    assert [a["answer"] for a in first] == [b["answer"] for b in second]


def test_a_text_embeds_the_same_alone_and_inside_a_batch(real_embeddings: object) -> None:
    texts = [
        "North Korea conducted its fourth nuclear test in January 2016.",
        "short",
        "KEDO was founded in 1995 to build two light-water reactors in North Korea; the project"
        " was halted in 2006 with construction about a third complete, after the Agreed Framework"
        " collapsed over the uranium enrichment programme.",
        "The Obama administration's strategic patience policy failed.",
    ]
    embed = real_embeddings.embed_documents  # type: ignore[attr-defined]
    alone = np.array([embed([t])[0] for t in texts])
    together = np.array(embed(texts))
    reordered = np.array(embed(texts[::-1]))[::-1]
    assert np.abs(alone - together).max() < TOLERANCE
    assert np.abs(alone - reordered).max() < TOLERANCE
    query = np.array([real_embeddings.embed_query(t) for t in texts])  # type: ignore[attr-defined]
    assert np.abs(alone - query).max() < TOLERANCE


def test_an_index_updated_file_by_file_ranks_like_one_built_at_once(
    real_index: Settings, real_embeddings: object, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(real_index.corpus_dir, corpus)
    held_back = sorted(p.name for p in corpus.glob("*.md") if p.name != "SOURCES.md")[::3]
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in held_back:
        shutil.move(corpus / name, aside / name)
    settings = real_index.model_copy(update={"corpus_dir": corpus, "data_dir": tmp_path / "data"})
    ingest(settings, lambda: real_embeddings)  # type: ignore[arg-type, return-value]
    for name in held_back:
        shutil.move(aside / name, corpus / name)
    report = ingest(settings, lambda: real_embeddings)  # type: ignore[arg-type, return-value]
    assert report.files_indexed == len(held_back)

    fresh = open_assistant(real_index, embeddings=real_embeddings)  # type: ignore[arg-type]
    updated = open_assistant(settings, embeddings=real_embeddings)  # type: ignore[arg-type]
    _assert_same([fresh.ask(q).to_dict() for q in QUESTIONS], [updated.ask(q).to_dict() for q in QUESTIONS])


def _ask_in_a_process(
    settings: Settings, questions: Path, *, prefix: list[str] | None = None
) -> list[dict[str, object]]:
    env = dict(os.environ)
    env.update(
        RAG_DATA_DIR=str(settings.data_dir),
        RAG_CORPUS_DIR=str(settings.corpus_dir),
        RAG_MODEL_CACHE_DIR=str(settings.models_dir),
    )
    out = subprocess.run(
        [*(prefix or []), str(Path(sys.executable).with_name("rag")), "ask", "--jsonl", str(questions)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_two_processes_on_one_core_and_under_load_give_the_same_answers(
    real_index: Settings, real_embeddings: object, tmp_path: Path
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    in_process = open_assistant(real_index, embeddings=real_embeddings)  # type: ignore[arg-type]
    expected = [in_process.ask(q).to_dict() for q in QUESTIONS]

    _assert_same(expected, _ask_in_a_process(real_index, questions))
    # One core (fewer OpenVINO streams and threads), with a busy neighbour on every core.
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(len(os.sched_getaffinity(0)))
    ]
    try:
        loaded = _ask_in_a_process(real_index, questions, prefix=one_core)
    finally:
        for proc in busy:
            stop_process(proc)
    _assert_same(expected, loaded)
