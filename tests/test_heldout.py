"""The held-out set (evals/heldout.jsonl): a second question file for checking that retrieval
tuned on the golden set generalises. Its format checks (fields, quotes, ids) are those of
``tests/test_golden.py``, which runs them on both files; here are the rules of its own: the same
mix of question types as the golden set, every document cited, and no question taken over from
the golden set."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.test_golden import GOLDEN, HELDOUT, MIX, read_items, type_shares

# Words that carry no topic; two questions sharing only these are not near-duplicates.
STOPWORDS = frozenset(
    "a an and according as at by did do does for from had has have how in is it its of on or per s the "
    "to was what when which who why with".split()
)


def content_words(question: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", question.lower())) - STOPWORDS


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of two questions' content words."""
    x, y = content_words(a), content_words(b)
    return len(x & y) / len(x | y) if x | y else 1.0


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return read_items(HELDOUT)


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    return read_items(GOLDEN)


def test_the_mix_matches_the_golden_set(items: list[dict[str, Any]], corpus: dict[str, str]) -> None:
    assert 36 <= len(items) <= 60
    share = type_shares(items)
    assert {t: s for t, s in share.items() if not MIX[t][0] <= s <= MIX[t][1]} == {}
    cited = {s for item in items for s in item["sources"]}
    assert sorted(set(corpus) - cited) == [], "every corpus document is cited at least once"


def test_ids_are_prefixed_and_not_golden_ids(
    items: list[dict[str, Any]], golden: list[dict[str, Any]]
) -> None:
    # A distinct prefix keeps held-out rows apart from golden ones in results.jsonl and reports.
    assert [item["id"] for item in items if not item["id"].startswith("h-")] == []
    assert {item["id"] for item in items} & {item["id"] for item in golden} == set()


def test_no_question_is_taken_from_the_golden_set(
    items: list[dict[str, Any]], golden: list[dict[str, Any]]
) -> None:
    near = [
        (mine["id"], theirs["id"], round(overlap(mine["question"], theirs["question"]), 2))
        for mine in items
        for theirs in golden
        if overlap(mine["question"], theirs["question"]) >= 0.6
    ]
    assert near == []


def test_the_overlap_measure_catches_a_reworded_copy() -> None:
    golden_question = "How long is North Korea's coastline?"
    assert overlap(golden_question, "how long is the coastline of North Korea") >= 0.6
    assert overlap(golden_question, "How many time zones does Russia have?") < 0.6


def test_unanswerable_facts_are_absent_from_the_corpus(corpus: dict[str, str]) -> None:
    # Spot checks of what the held-out unanswerable questions rely on.
    text = "\n".join(corpus.values()).lower()
    assert "think tank" not in text and "council on foreign relations" not in text  # h-u01
    assert "literacy" not in corpus["cia-world-factbook-2016-iran.md"].lower()  # h-u02
    six_party = [name for name, body in corpus.items() if "six-party" in body.lower()]
    assert six_party == ["history-state-gov-milestones-denuclearization-two-koreas-1993-2001.md"]  # h-u03
    assert "intercontinental" not in text  # h-u04
