"""Unit tests of each eval metric on hand-made answers and rankings (no model, no index)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from rag.evaluation.metrics import (
    ExactJudge,
    aggregate,
    citation_metrics,
    correctness_metrics,
    faithfulness_metrics,
    key_fact_share,
    latency_metrics,
    quote_in,
    refusal_metrics,
    retrieval_metrics,
    summarise,
)
from rag.retrieval import Passage
from rag.text import split_sentences

QUOTE = (
    "The Obama administration’s strategic patience policy, one that can only be described as"
    " shutting the window"
)
ITEM = {
    "id": "a01",
    "type": "article",
    "question": "Which policy failed?",
    "key_facts": [["strategic patience"], ["obama"]],
    "sources": ["article.md"],
    "evidence": [QUOTE],
}


def chunk(source: str, text: str) -> dict[str, Any]:
    return {"source": source, "chunk_id": f"{source}:{hash(text) % 1000}", "text": text}


def passage(text: str) -> Passage:
    return Passage("c1", text, {"source": "article.md"}, 0.5)


# --- evidence matching -----------------------------------------------------------------------


def test_quote_matching_ignores_case_and_non_breaking_spaces() -> None:
    assert quote_in("strategic patience policy", "The Strategic\u00a0patience\n policy failed.")
    assert not quote_in("strategic patience policy", "The strategic policy of patience failed.")


def test_most_of_a_quote_cut_by_a_chunk_boundary_counts() -> None:
    cut_end = QUOTE[: int(len(QUOTE) * 0.8)]  # the chunk ends inside the quote
    assert quote_in(QUOTE, "Earlier text. " + cut_end)
    assert quote_in(QUOTE, QUOTE[int(len(QUOTE) * 0.25) :] + " and more")
    assert not quote_in(QUOTE, "Earlier text. " + QUOTE[: int(len(QUOTE) * 0.5)])


def test_short_quotes_must_match_whole() -> None:
    assert quote_in("2,495 km", "Coastline\n\n2,495 km")
    assert not quote_in("2,495 km", "Coastline 2,49")


# --- retrieval -------------------------------------------------------------------------------


def test_retrieval_at_k_and_reciprocal_rank() -> None:
    ranking = [
        chunk("other.md", "Kimchi is a dish."),
        chunk("article.md", "Talks are a sign of strength."),
        chunk("article.md", "Intro. " + QUOTE + " for diplomacy."),
    ] + [chunk("other.md", f"filler {i}") for i in range(7)]
    m = retrieval_metrics(ITEM, ranking)
    assert m["retrieval.source@1"] == 0.0 and m["retrieval.source@3"] == 1.0
    assert m["retrieval.evidence@1"] == 0.0
    assert m["retrieval.evidence@3"] == m["retrieval.evidence@10"] == 1.0
    assert m["retrieval.rr@1"] == 0.0
    assert m["retrieval.rr@3"] == pytest.approx(1 / 3) and m["retrieval.rr@10"] == pytest.approx(1 / 3)


def test_evidence_only_counts_in_a_chunk_of_its_own_source() -> None:
    ranking = [chunk("copy.md", QUOTE)]
    m = retrieval_metrics(ITEM, ranking)
    assert m["retrieval.evidence@1"] == 0.0 and m["retrieval.rr@10"] == 0.0


def test_multi_document_items_need_every_source_and_every_quote() -> None:
    item = {**ITEM, "sources": ["article.md", "factbook.md"], "evidence": [QUOTE, "2,495 km"]}
    one = [chunk("article.md", QUOTE)]
    both = [*one, chunk("corpus/factbook.md", "Coastline: 2,495 km")]
    assert retrieval_metrics(item, one)["retrieval.source@5"] == 0.0
    assert retrieval_metrics(item, one)["retrieval.evidence@5"] == 0.0
    assert retrieval_metrics(item, both)["retrieval.source@5"] == 1.0
    assert retrieval_metrics(item, both)["retrieval.evidence@5"] == 1.0
    assert retrieval_metrics(item, both)["retrieval.evidence@1"] == 0.0


def test_retrieval_metrics_do_not_apply_to_unanswerable_questions() -> None:
    m = retrieval_metrics({"type": "unanswerable", "sources": [], "evidence": []}, [chunk("a.md", "x")])
    assert set(m.values()) == {None}


# --- correctness -----------------------------------------------------------------------------


def test_key_facts_need_one_alternative_of_every_group() -> None:
    facts = [["2012"], ["satellite", "rocket"]]
    assert key_fact_share(facts, "It collapsed in 2012 after a ROCKET launch [1].") == 1.0
    assert key_fact_share(facts, "It collapsed in 2012.") == 0.5
    assert key_fact_share(facts, "No idea.") == 0.0


def test_correct_only_when_every_group_is_present() -> None:
    assert correctness_metrics(ITEM, {"answer": "Obama's strategic patience [1]."}) == {
        "correctness.facts": 1.0,
        "correctness.correct": 1.0,
    }
    assert correctness_metrics(ITEM, {"answer": "Strategic patience."})["correctness.correct"] == 0.0
    assert correctness_metrics({"type": "unanswerable", "key_facts": []}, {"answer": "x"}) == {
        "correctness.facts": None,
        "correctness.correct": None,
    }


# --- citations -------------------------------------------------------------------------------


def answer(
    text: str, sentences: list[tuple[str, list[int]]], passages: Sequence[str], **extra: Any
) -> dict[str, Any]:
    cited = sorted({n for _, ns in sentences for n in ns})
    return {
        "answer": text,
        "refused": False,
        "mode": "extractive",
        "citations": [
            {"n": n, "source": "article.md", "text": passages[n - 1]} for n in cited if n <= len(passages)
        ],
        "retrieved": [
            {"source": "article.md", "chunk_id": f"c{i}", "score": 0.5, "text": t}
            for i, t in enumerate(passages)
        ],
        "sentences": [{"text": t, "citations": ns, "supported": None} for t, ns in sentences],
        **extra,
    }


def test_citations_valid_and_share_of_cited_sentences() -> None:
    good = answer("A claim [1]. Another [2].", [("A claim [1].", [1]), ("Another [2].", [2])], ["p1", "p2"])
    assert citation_metrics(good) == {"citations.valid": 1.0, "citations.sentence_share": 1.0}
    half = answer("A claim [1]. No source.", [("A claim [1].", [1]), ("No source.", [])], ["p1"])
    assert citation_metrics(half)["citations.sentence_share"] == 0.5
    bad = answer("A claim [3].", [("A claim [3].", [3])], ["p1"])
    assert citation_metrics(bad)["citations.valid"] == 0.0


def test_sentences_are_split_from_the_text_when_the_json_has_none() -> None:
    data = answer("A claim [1]. No source here.", [], ["p1"])
    data.pop("sentences")
    assert citation_metrics(data)["citations.sentence_share"] == 0.5


def test_extractive_sentences_keep_their_markers() -> None:
    # The extractive answer puts the marker after the full stop; the sentence still owns it.
    assert split_sentences("The policy failed. [1] Talks are a sign of strength. [2]") == [
        "The policy failed. [1]",
        "Talks are a sign of strength. [2]",
    ]
    # Quoted list items have no full stop: the marker still closes the claim.
    assert split_sentences("Coastline: 2,495 km [1] Capital: Pyongyang [2]") == [
        "Coastline: 2,495 km [1]",
        "Capital: Pyongyang [2]",
    ]
    assert split_sentences("Pyongyang [1] and Seoul [2] agreed.") == ["Pyongyang [1] and Seoul [2] agreed."]


# --- faithfulness ----------------------------------------------------------------------------


def test_exact_judge_accepts_quotes_and_section_labels_only() -> None:
    judge = ExactJudge()
    text = (
        "Geography\n- total: 1,607\u00a0km\n"
        "The strategic patience policy has proved to be an immense failure."
    )
    assert judge.supported(
        "The strategic patience policy has proved to be an immense failure. [1]", [passage(text)]
    )
    assert judge.supported("Land boundaries: total: 1,607 km [1]", [passage(text)])
    assert not judge.supported("The strategic patience policy was a success. [1]", [passage(text)])
    assert not judge.supported("Land boundaries: 1,700 km [1]", [passage(text)])


class CountingJudge:
    name = "counting"

    def __init__(self, verdicts: list[bool | None]) -> None:
        self.verdicts = verdicts
        self.claims: list[str] = []

    def supported(self, claim: str, passages: Sequence[Passage]) -> bool | None:
        self.claims.append(claim)
        return self.verdicts[len(self.claims) - 1]


def test_faithfulness_is_the_share_of_supported_sentences() -> None:
    data = answer(
        "One [1]. Two [2]. Three [1]. Four.",
        [("One [1].", [1]), ("Two [2].", [2]), ("Three [1].", [1]), ("Four.", [])],
        ["p1", "p2"],
    )
    judge = CountingJudge([True, False, None])
    m = faithfulness_metrics(data, judge)
    assert m == {"faithfulness": 0.25, "faithfulness.undecided": 0.25}
    assert judge.claims == ["One [1].", "Two [2].", "Three [1]."]  # the uncited one is not judged


def test_refusals_have_no_citation_or_faithfulness_score() -> None:
    refused = {"answer": "I could not find that.", "refused": True, "retrieved": [], "citations": []}
    assert set(citation_metrics(refused).values()) == {None}
    assert set(faithfulness_metrics(refused, ExactJudge()).values()) == {None}


# --- refusals, latency, aggregates -----------------------------------------------------------


def test_refusal_metrics_by_question_type() -> None:
    assert refusal_metrics({"type": "unanswerable"}, {"refused": True}) == {
        "refusal.unanswerable_refused": 1.0,
        "refusal.answerable_refused": None,
    }
    assert refusal_metrics(ITEM, {"refused": True})["refusal.answerable_refused"] == 1.0
    assert refusal_metrics(ITEM, {"refused": False})["refusal.answerable_refused"] == 0.0


def test_latency_percentiles() -> None:
    assert latency_metrics({"timings_ms": {"total": 120.0, "first_token": 40}}) == {
        "latency.total_ms": 120.0,
        "latency.first_token_ms": 40.0,
    }
    s = summarise([{"latency.total_ms": float(v)} for v in range(1, 101)])
    assert s["latency.total_ms.p50"] == pytest.approx(50.5)
    assert s["latency.total_ms.p95"] == pytest.approx(95.05)


def test_aggregates_average_only_where_a_metric_applies() -> None:
    rows = [
        {"type": "article", "metrics": {"correctness.correct": 1.0, "refusal.unanswerable_refused": None}},
        {"type": "article", "metrics": {"correctness.correct": 0.0, "refusal.unanswerable_refused": None}},
        {
            "type": "unanswerable",
            "metrics": {"correctness.correct": None, "refusal.unanswerable_refused": 1.0},
        },
    ]
    agg = aggregate(rows)
    assert agg["overall"]["correctness.correct"] == 0.5
    assert agg["overall"]["refusal.unanswerable_refused"] == 1.0
    assert agg["by_type"]["article"]["correctness.correct"] == 0.5
    assert agg["by_type"]["unanswerable"]["correctness.correct"] is None
    assert agg["overall"]["questions"] == 3.0 and agg["overall"]["errors"] == 0.0
