"""Query-side retrieval levers, on a tiny corpus with hashing embeddings (no model loaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.answering import Assistant
from rag.answering.assistant import open_index
from rag.answering.chain import build_chain, ranked_passages
from rag.answering.extractive import ExtractiveAnswerer
from rag.config import Settings
from rag.index.ingest import ingest
from rag.retrieval import HybridRetriever, Passage
from rag.retrieval.fusion import fuse_passages
from rag.retrieval.routing import authored_reference, question_parts, reserve
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
    assert "op-ed.md" not in [p.source for p in ranked_passages(r, QUESTION, settings.top_k)]
    r.settings = settings.model_copy(update={"route_authored": True})
    top = ranked_passages(r, QUESTION, settings.top_k)
    assert "op-ed.md" in [p.source for p in top]
    assert any("tighten loopholes" in p.text for p in top)


def test_questions_without_an_article_reference_are_left_alone(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    question = "What did the Security Council diplomats meet on?"
    r.settings = settings.model_copy(update={"route_authored": False})
    before = [p.chunk_id for p in ranked_passages(r, question, settings.top_k)]
    r.settings = settings.model_copy(update={"route_authored": True})
    assert [p.chunk_id for p in ranked_passages(r, question, settings.top_k)] == before


def test_k_is_the_callers_not_the_settings(retriever: tuple[HybridRetriever, Settings]) -> None:
    """``retrieve`` returns the ``k`` passages it is asked for (the settings say top_k 3); a
    deeper ranking begins with them."""
    r, settings = retriever
    two = ranked_passages(r, QUESTION, 2)
    assert len(two) == 2 and settings.top_k == 3
    deeper = ranked_passages(r, QUESTION, 2, depth=4)
    assert len(deeper) == 4 and [p.chunk_id for p in deeper[:2]] == [p.chunk_id for p in two]


def test_bylines_come_from_the_front_matter(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, _ = retriever
    assert list(r.bylines()) == ["op-ed.md"]
    assert "jane writer" in r.bylines()["op-ed.md"]


def test_metadata_is_read_a_page_at_a_time(retriever: tuple[HybridRetriever, Settings]) -> None:
    # One get() of a whole 100k-chunk collection fails in Chroma; paging must still see every chunk.
    from rag.retrieval.retriever import _all_metadatas

    r, _ = retriever
    total = r.collection.count()
    assert total > 5
    metas = _all_metadatas(r.collection, page=2)
    assert len(metas) == total
    assert {m["source"] for m in metas} == {"op-ed.md", "reference.md"}


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
    assert ranked_passages(r, QUESTION, settings.top_k)


def assistant_over(r: HybridRetriever, settings: Settings, min_score: float) -> Assistant:
    """The extractive chain over ``r`` with ``settings`` (which ``r`` uses too)."""
    r.settings = settings
    answerer = ExtractiveAnswerer(r.embeddings, min_score=min_score)
    return Assistant(build_chain(retriever=r, answerer=answerer, settings=settings))


def test_an_article_question_is_not_refused_for_a_low_cosine_alone(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    # A threshold no passage reaches: only questions about a named document get past it.
    strict = settings.model_copy(update={"min_relevance": 0.99})
    assistant = assistant_over(r, strict, min_score=0.0)
    answer = assistant.ask(QUESTION)
    assert not answer.refused
    assert any(p.named and p.source == "op-ed.md" for p in answer.retrieved)
    assert assistant.ask("What did the Security Council diplomats meet on?").refused
    r.settings = strict.model_copy(update={"route_authored": False})
    assert assistant.ask(QUESTION).refused


def test_a_passage_stays_named_when_another_list_holds_a_fresh_copy() -> None:
    vector = np.ones(2, dtype=np.float32)
    routed = Passage("c1", "text", {"source": "a.md"}, 0.3, vector=vector, named=True)
    again = Passage("c1", "text", {"source": "a.md"}, 0.3, vector=vector)
    other = Passage("c2", "text", {"source": "b.md"}, 0.5, vector=vector)
    fused = fuse_passages([[routed], [other, again]])
    assert [p.chunk_id for p in fused] == ["c1", "c2"]
    assert fused[0].named and not fused[1].named


TWO_PART = "When did South Korea join the MTCR, and when did it join the Nuclear Suppliers Group?"


def test_each_part_of_a_two_part_question_gets_a_place_in_the_top_k(
    retriever: tuple[HybridRetriever, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, settings = retriever
    # Scripted rankings: the whole question and its first part find only MTCR passages; the
    # second part finds the NSG passage first.
    vector = np.zeros(r.embeddings.dim, dtype=np.float32)  # type: ignore[attr-defined]
    vector[0] = 1.0

    def passage(chunk_id: str) -> Passage:
        return Passage(chunk_id, chunk_id, {"source": chunk_id[:4] + ".md"}, 0.0, vector=vector)

    def rank(query: str, qvec: np.ndarray, sources: object, fetch_k: int) -> list[Passage]:
        if "Nuclear Suppliers Group" in query and "," not in query:
            return [passage("nsg-1"), passage("mtcr-1")]
        return [passage(f"mtcr-{i}") for i in range(1, 6)]

    monkeypatch.setattr(r, "_rank", rank)
    r.settings = settings.model_copy(update={"split_questions": False})
    plain = ranked_passages(r, TWO_PART, settings.top_k)
    assert [p.chunk_id for p in plain] == ["mtcr-1", "mtcr-2", "mtcr-3"]
    r.settings = settings.model_copy(update={"split_questions": True})
    top = ranked_passages(r, TWO_PART, settings.top_k)
    assert [p.chunk_id for p in top] == ["mtcr-1", "mtcr-2", "nsg-1"]
    # Asked for more (the eval takes 10 to score evidence@5 and @10), the first top_k are still
    # the ones a user gets.
    deeper = ranked_passages(r, TWO_PART, settings.top_k, depth=5)
    assert [p.chunk_id for p in deeper][:3] == ["mtcr-1", "mtcr-2", "nsg-1"]
    whole = np.asarray(r.embeddings.embed_query(TWO_PART))
    # The similarity stays the one to the whole question (the refusal threshold reads it).
    assert top[2].similarity == pytest.approx(float(whole[0]) / float(np.linalg.norm(whole)))


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("Who set up KEDO, and which of them paid the most?", 2),
        ("How many votes does a resolution need, and can one country stop it?", 2),
        ("What is the voting age in North Korea and South Korea?", 0),
        ("Why did the talks fail?", 0),
    ],
)
def test_question_parts(question: str, parts: int) -> None:
    found = question_parts(question)
    assert len(found) == parts
    if found:
        assert found[0] in question and found[1].startswith(("which", "can"))


def test_reserve_keeps_every_pick_in_the_top_k_in_rank_order() -> None:
    ps = [Passage(c, "", {}, 0.0) for c in "abcdef"]
    out = reserve(ps, [ps[5], ps[4], ps[0]], 3)
    assert [p.chunk_id for p in out] == ["a", "e", "f", "b", "c", "d"]
    assert [p.chunk_id for p in reserve(ps, [], 3)] == list("abcdef")


def test_bylined_ranking_from_memory_matches_the_chroma_search(
    retriever: tuple[HybridRetriever, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, settings = retriever
    r.settings = settings.model_copy(update={"route_authored": True})
    qvec = np.asarray(r.embeddings.embed_query(QUESTION), dtype=np.float32)
    from_chroma = r._rank(QUESTION, qvec, ["op-ed.md"], 3)
    from_memory = r._rank_bylined(QUESTION, qvec, ["op-ed.md"], 3)
    assert [p.chunk_id for p in from_memory] == [p.chunk_id for p in from_chroma]
    assert [p.similarity for p in from_memory] == pytest.approx([p.similarity for p in from_chroma], abs=1e-5)
    from_memory[0].metadata["source"] = "changed by a caller"
    again = r._rank_bylined(QUESTION, qvec, ["op-ed.md"], 3)
    assert [p.chunk_id for p in again] == [p.chunk_id for p in from_chroma]
    assert all(p.source == "op-ed.md" for p in again)
    # Too many bylined chunks to keep: the same ranking comes from Chroma.
    monkeypatch.setattr("rag.retrieval.retriever._Bylined.MAX_CACHED", 0)
    r._bylines = None
    assert r._bylined().chunks is None
    assert [p.chunk_id for p in r._rank_bylined(QUESTION, qvec, ["op-ed.md"], 3)] == [
        p.chunk_id for p in from_chroma
    ]


# A short document whose title the question spells out, crowded out by a long one on its topic.
NAMED = '---\ntitle: "Nuclear Suppliers Group (Wikipedia)"\n---\n\nIt started in 1974 after a test in India.'
CROWD = '---\ntitle: "Export controls"\n---\n\n# Export controls\n\n' + "\n\n".join(
    f"## Part {i}\n\nWhen was the group of nuclear suppliers founded? Asked at meeting {i}."
    for i in range(12)
)


@pytest.mark.parametrize("lever", [False, True])
def test_a_question_spelling_out_a_title_keeps_that_document_in_the_top_k(
    tmp_path: Path, lever: bool
) -> None:
    write_corpus(tmp_path / "corpus", {"nsg.md": NAMED, "crowd.md": CROWD})
    settings = make_settings(tmp_path, top_k=3, chunk_size=200, chunk_overlap=0, reserve_titled=lever)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    r = open_index(settings, embeddings).retriever(embeddings, settings)
    assert r.title_phrases()[("nuclear", "suppliers", "group")] == "nsg.md"
    top = ranked_passages(r, "When was the Nuclear Suppliers Group founded?", settings.top_k)
    assert len(top) == 3
    assert ("nsg.md" in [p.source for p in top]) is lever
    # Not a name: the same words out of order leave the ranking alone.
    reordered = ranked_passages(r, "Which group of nuclear suppliers was founded?", settings.top_k)
    assert "nsg.md" not in [p.source for p in reordered]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who belongs to the Missile Technology Control Regime?", ["mtcr.md"]),
        (
            "When did the missile technology control regime and the nuclear suppliers group start?",
            ["mtcr.md", "nsg.md"],
        ),
        ("What does the CIA World Factbook say about Iran?", []),  # a family of documents
        ("What is the population of North Korea?", []),  # "of north korea": stopword at the end
        ("Which missile technology is controlled?", []),  # two title words only
    ],
)
def test_which_questions_spell_out_a_title(question: str, expected: list[str]) -> None:
    from rag.retrieval.routing import spelled_out, title_phrases

    titles = {
        "mtcr.md": "Missile Technology Control Regime (Wikipedia)",
        "nsg.md": "Nuclear Suppliers Group (Wikipedia)",
        "f12.md": "CIA World Factbook 2012: Korea, North",
        "f16.md": "CIA World Factbook 2016: Iran",
        "e.md": "Economy of North Korea (Wikipedia)",
    }
    assert spelled_out(question, title_phrases(titles)) == expected


def test_a_name_no_document_mentions_is_refused_with_a_note(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    # A threshold every passage passes: only the unknown name can refuse.
    lenient = settings.model_copy(update={"min_relevance": -1.0})
    question = "What were diplomats doing at the Security Council about Natanz?"
    assistant = assistant_over(r, lenient, min_score=-1.0)
    assert r.unknown_names(question) == ["Natanz"]
    assert r.unknown_names(QUESTION) == []  # "Security Council" is in the documents
    refused = assistant.ask(question)
    assert refused.refused and refused.note == "the documents never mention “Natanz”"
    assert refused.retrieved  # the closest passages are still shown
    assert not assistant.ask(QUESTION).refused
    off = assistant_over(r, lenient.model_copy(update={"refuse_unknown_names": False}), min_score=-1.0)
    assert not off.ask(question).refused


def test_unknown_names_read_the_index_as_the_search_does(tmp_path: Path) -> None:
    """Stopwords the index leaves out, letters that casefold() would change, decomposed accents."""
    text = "Will Smith walked down the Hauptstraße in Montréal with the Koreans.\n"
    write_corpus(tmp_path / "corpus", {"notes.md": '---\ntitle: "Notes"\n---\n\n# Notes\n\n' + text})
    settings = make_settings(tmp_path)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    r = open_index(settings, embeddings).retriever(embeddings, settings)
    assert r.unknown_names("What did Will Smith see on the Hauptstraße?") == []
    assert r.unknown_names("Was Smith in Montre\u0301al?") == []  # "é" as "e" + a combining accent
    assert r.unknown_names("Did Smith visit Natanz or Macau?") == ["Natanz", "Macau"]


def test_a_follow_up_is_checked_for_its_own_words_only(
    retriever: tuple[HybridRetriever, Settings],
) -> None:
    r, settings = retriever
    assistant = assistant_over(r, settings.model_copy(update={"min_relevance": -1.0}), min_score=-1.0)
    history = [
        {"role": "user", "content": "What did the diplomats say about Natanz?"},
        {"role": "assistant", "content": "I could not find the answer to that in the documents."},
    ]
    answer = assistant.ask("What were they doing at the Security Council?", history)
    assert answer.note is None or "Natanz" not in answer.note
    assert assistant.ask("And about Natanz?", history).refused
