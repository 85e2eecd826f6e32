"""Query-side retrieval levers, on a tiny corpus with hashing embeddings (no model loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.components import open_index
from rag.config import Settings
from rag.ingest import ingest
from rag.retrieval import HybridRetriever, authored_reference
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings, write_corpus

# One short op-ed with a byline and a long reference text on the same topic: "the article"
# questions should reach the op-ed even though the reference text matches their words better.
OP_ED = """---
title: "Talk to Them"
author: "Jane Writer"
publication: "The Test Gazette"
published: 2016
---

# Talk to Them

Diplomats are working in the Security Council to tighten loopholes in a resolution.

Talking to an adversary is a sign of strength.
"""

REFERENCE = '---\ntitle: "Security Council"\n---\n\n# Security Council\n\n' + "\n\n".join(
    f"## Part {i}\n\nThe Security Council and its diplomats met in session {i} on a resolution {i}."
    for i in range(12)
)


@pytest.fixture
def retriever(tmp_path: Path) -> tuple[HybridRetriever, Settings]:
    write_corpus(tmp_path / "corpus", {"op-ed.md": OP_ED, "reference.md": REFERENCE})
    settings = make_settings(tmp_path, top_k=3, chunk_size=200, chunk_overlap=0)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    return open_index(settings, embeddings).retriever(embeddings, settings), settings


QUESTION = "What were diplomats doing at the Security Council, according to the article?"


def test_article_questions_reach_the_bylined_document_only_with_the_lever(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    r.settings = settings.model_copy(update={"route_authored": False})
    assert "op-ed.md" not in [p.source for p in r.retrieve(QUESTION)]
    r.settings = settings.model_copy(update={"route_authored": True})
    top = r.retrieve(QUESTION)
    assert "op-ed.md" in [p.source for p in top]
    assert any("tighten loopholes" in p.text for p in top)


def test_questions_without_an_article_reference_are_left_alone(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    question = "What did the Security Council diplomats meet on?"
    r.settings = settings.model_copy(update={"route_authored": False})
    before = [p.chunk_id for p in r.retrieve(question)]
    r.settings = settings.model_copy(update={"route_authored": True})
    assert [p.chunk_id for p in r.retrieve(question)] == before


def test_bylines_come_from_the_front_matter(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, _ = retriever
    assert list(r.bylines()) == ["op-ed.md"]
    assert "jane writer" in r.bylines()["op-ed.md"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What does the author want?", ["a.md"]),
        ("Per the op-ed, what changed?", ["a.md"]),
        ("What does the writer's argument rest on?", ["a.md"]),
        ("What does the Gazette piece say about trade?", ["a.md"]),
        ("What does the Wikipedia article say about trade?", []),
        ("What is an article of the UN Charter?", []),
        ("Who authored the treaty?", []),
    ],
)
def test_which_questions_point_at_an_authored_piece(question: str, expected: list[str]) -> None:
    assert authored_reference(question, {"a.md": "jane doe, the gazette, 2016, why talk"}) == expected


def test_every_document_bylined_means_no_routing(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus", {"op-ed.md": OP_ED})
    settings = make_settings(tmp_path, route_authored=True)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    r = open_index(settings, embeddings).retriever(embeddings, settings)
    assert r.bylines() == {}
    assert r.retrieve(QUESTION)


def test_an_article_question_is_not_refused_for_a_low_cosine_alone(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    from rag.answerers import ExtractiveAnswerer
    from rag.chain import Assistant, build_chain

    r, settings = retriever
    # A threshold no passage reaches: only questions about a named document get past it.
    strict = settings.model_copy(update={"min_relevance": 0.99})
    r.settings = strict
    answerer = ExtractiveAnswerer(r.embeddings, min_score=0.0)
    assistant = Assistant(build_chain(retriever=r, answerer=answerer, settings=strict))
    answer = assistant.ask(QUESTION)
    assert not answer.refused
    assert any(p.named and p.source == "op-ed.md" for p in answer.retrieved)
    assert assistant.ask("What did the Security Council diplomats meet on?").refused
    r.settings = strict.model_copy(update={"route_authored": False})
    assert assistant.ask(QUESTION).refused
