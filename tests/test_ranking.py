"""The learned sentence ranker: its features, its weights file, and how the extractive answerer
uses it (fake embeddings; the shipped weights are only loaded, never trusted for an answer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.answering.extractive import ExtractiveAnswerer, candidates
from rag.answering.ranking import FEATURES, SentenceRanker
from rag.retrieval import Passage
from tests.fakes import HashingEmbeddings


def passage(text: str, source: str, similarity: float, *, named: bool = False) -> Passage:
    meta = {"source": source, "title": source, "section": "Members"}
    return Passage(
        chunk_id=f"{source}-{similarity}", text=text, metadata=meta, similarity=similarity, named=named
    )


PASSAGES = [
    passage(
        "The task force was set up by the Group of Seven. It had sixteen members at first.",
        "fatf.md",
        0.7,
    ),
    passage("The group now has 38 members and two regional organisations.", "fatf-today.md", 0.5),
]


def features_of(question: str, passages: list[Passage] = PASSAGES) -> tuple[list[str], np.ndarray]:
    found = candidates(passages)
    answerer = ExtractiveAnswerer(HashingEmbeddings())
    got, features = answerer.features(question, passages)
    assert [c.shown for c in got] == [c.shown for c in found]
    return [c.shown for c in found], features


def column(name: str) -> int:
    return FEATURES.index(name)


def test_features_have_one_row_per_candidate_and_one_column_per_feature() -> None:
    shown, features = features_of("How many members does the task force have?")
    assert features.shape == (len(shown), len(FEATURES))
    assert np.isfinite(features).all()


def test_answer_type_features_follow_the_question() -> None:
    shown, many = features_of("How many members does the task force have?")
    with_digit = [i for i, s in enumerate(shown) if "38" in s]
    without = [i for i, s in enumerate(shown) if not any(ch.isdigit() for ch in s)]
    assert many[with_digit, column("number_for_how_many")].tolist() == [1.0]
    assert many[without, column("number_for_how_many")].tolist() == [0.0] * len(without)
    # The same sentences under a question that asks no number: the feature stays off.
    _, why = features_of("Why was the task force set up?")
    assert why[:, column("number_for_how_many")].sum() == 0
    dated = [
        passage("The task force was set up in 1989. Its 38 members meet three times a year.", "f.md", 0.6)
    ]
    shown, when = features_of("When was the task force set up?", dated)
    assert when[:, column("year_for_when")].tolist() == [1.0 if "1989" in s else 0.0 for s in shown]
    assert when[:, column("has_number")].tolist() == [1.0] * len(shown)


def test_passage_features_come_from_the_sentence_s_passage() -> None:
    shown, features = features_of("How many members does the task force have?")
    second = next(i for i, s in enumerate(shown) if "38" in s)
    assert features[second, column("passage_rank")] == pytest.approx(0.5)
    assert features[second, column("passage_gap")] == pytest.approx(0.5 - 0.7)
    assert features[second, column("top_document")] == 0.0
    assert features[:, column("dense_gap")].max() == pytest.approx(0.0)


def one_hot_ranker(feature: str) -> SentenceRanker:
    weights = np.zeros(len(FEATURES), dtype=np.float32)
    weights[column(feature)] = 1.0
    return SentenceRanker(
        mean=np.zeros(len(FEATURES), np.float32), scale=np.ones(len(FEATURES), np.float32), weights=weights
    )


def test_the_ranker_s_order_decides_which_sentences_are_quoted() -> None:
    question = "How many members does the task force have?"
    emb = HashingEmbeddings()
    by_rank = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=1, ranker=one_hot_ranker("passage_rank"))
    by_number = ExtractiveAnswerer(
        emb, min_score=-1.0, max_sentences=1, ranker=one_hot_ranker("number_for_how_many")
    )
    assert by_rank.select(question, PASSAGES)[0][0] == 1
    picked = by_number.select(question, PASSAGES)
    assert picked[0][0] == 2 and "38 members" in picked[0][1]


def test_with_a_ranker_the_best_max_sentences_are_quoted_and_min_score_still_refuses() -> None:
    emb = HashingEmbeddings()
    ranker = one_hot_ranker("dense")
    three = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=3, ranker=ranker)
    assert len(three.select("How many members does the task force have?", PASSAGES)) == 3
    strict = ExtractiveAnswerer(emb, min_score=0.99, ranker=ranker)
    assert strict.select("How many members does the task force have?", PASSAGES) == []


def test_weights_round_trip_and_refuse_another_feature_list(tmp_path: Path) -> None:
    ranker = SentenceRanker(
        mean=np.arange(len(FEATURES), dtype=np.float32),
        scale=np.full(len(FEATURES), 2.0, np.float32),
        weights=np.linspace(-1, 1, len(FEATURES)).astype(np.float32),
        trained_on="golden",
    )
    path = tmp_path / "ranker.json"
    ranker.save(path)
    again = SentenceRanker.load(path)
    x = np.random.default_rng(0).normal(size=(4, len(FEATURES))).astype(np.float32)
    assert np.allclose(again.score(x), ranker.score(x)) and again.trained_on == "golden"
    data = json.loads(path.read_text())
    data["features"] = data["features"][:-1]
    with pytest.raises(ValueError, match="other features"):
        SentenceRanker.from_json(data)


def test_the_shipped_weights_load_and_were_trained_on_the_current_features() -> None:
    ranker = SentenceRanker.load()
    assert ranker.weights.shape == (len(FEATURES),)
    assert np.isfinite(ranker.weights).all() and np.abs(ranker.weights).sum() > 0
    assert ranker.trained_on


def test_settings_switch_the_ranker() -> None:
    from rag.answering.assistant import build_extractive
    from rag.config import Settings

    emb = HashingEmbeddings()
    assert build_extractive(Settings(), emb).ranker is not None
    assert build_extractive(Settings(sentence_ranker="off"), emb).ranker is None


def test_when_every_pick_is_from_one_document_another_document_s_best_sentence_joins() -> None:
    question = "How many members did the task force have then and now?"
    first = passage(
        "The task force was set up by the Group of Seven. It had sixteen members at first. "
        "Its secretariat sits in Paris. Its president serves one year.",
        "fatf.md",
        0.7,
    )
    passages = [first, PASSAGES[1]]
    emb, ranker = HashingEmbeddings(), one_hot_ranker("passage_rank")
    alone = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=3, ranker=ranker)
    assert {n for n, _ in alone.select(question, passages)} == {1}
    both = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=3, ranker=ranker, other_document_within=6)
    picked = both.select(question, passages)
    assert [n for n, _ in picked] == [1, 1, 1, 2] and "38 members" in picked[-1][1]
    # Beyond the rank it must reach, the other document stays out.
    near = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=3, ranker=ranker, other_document_within=4)
    assert {n for n, _ in near.select(question, passages)} == {1}
    # Picks already from two documents: nothing is added.
    two = ExtractiveAnswerer(emb, min_score=-1.0, max_sentences=2, ranker=ranker, other_document_within=6)
    assert [n for n, _ in two.select(question, [PASSAGES[1], first])] == [1, 2]


def test_settings_reach_the_other_document_rule() -> None:
    from rag.answering.assistant import build_extractive
    from rag.config import Settings

    emb = HashingEmbeddings()
    assert build_extractive(Settings(), emb).other_document_within == 6
    assert build_extractive(Settings(extractive_other_document_within=0), emb).other_document_within == 0
