"""The golden set (evals/golden.jsonl) is well formed and every quote is really in its file.

The format checks (fields, quotes, ids) run on every question file in ``QUESTION_FILES``: the
golden set and every set with a thresholds file (evals/heldout.jsonl, evals/fresh7.jsonl, ...).
The rules that only concern one file (the golden mix, its spot checks) use ``items``;
``tests/test_heldout.py`` has the held-out set's own."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rag.evaluation.harness import ARTICLE, FIELDS, golden_problems

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "evals" / "golden.jsonl"
HELDOUT = REPO / "evals" / "heldout.jsonl"
# Every committed question set: the golden set and each set gated by its own thresholds file.
GATED = sorted(p.stem.removeprefix("thresholds-") for p in (REPO / "evals").glob("thresholds-*.json"))
QUESTION_FILES = {"golden": GOLDEN, **{name: REPO / "evals" / f"{name}.jsonl" for name in GATED}}
# Share of each question type, for the golden set and the held-out set alike.
MIX = {
    "article": (0.22, 0.38),
    "corpus": (0.22, 0.38),
    "multi": (0.10, 0.20),
    "unanswerable": (0.10, 0.20),
    "followup": (0.06, 0.14),
}


def read_items(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), f"{path.name}: no blank lines"
    return [json.loads(line) for line in lines]


def type_shares(items: list[dict[str, Any]]) -> dict[str, float]:
    counts = Counter(item["type"] for item in items)
    return {t: counts[t] / len(items) for t in MIX}


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return read_items(GOLDEN)


@pytest.fixture(scope="module", params=list(QUESTION_FILES))
def any_items(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Each question file in turn: the format checks hold for all of them."""
    return read_items(QUESTION_FILES[request.param])


def test_every_item_follows_the_format(any_items: list[dict[str, Any]], corpus: dict[str, str]) -> None:
    problems = [f"{item.get('id')}: {p}" for item in any_items for p in golden_problems(item, corpus)]
    assert problems == []


def test_field_types(any_items: list[dict[str, Any]]) -> None:
    for item in any_items:
        assert list(item) == list(FIELDS)
        assert all(isinstance(item[k], str) for k in ("id", "type", "question", "answer"))
        assert all(isinstance(item[k], list) for k in ("history", "key_facts", "sources", "evidence"))


def test_every_evidence_quote_is_verbatim_in_its_file(
    any_items: list[dict[str, Any]], corpus: dict[str, str]
) -> None:
    checked = 0
    for item in any_items:
        for source, quote in zip(item["sources"], item["evidence"], strict=True):
            assert quote in corpus[source], (item["id"], source, quote)
            checked += 1
    assert checked >= len(any_items) * 0.8


def test_ids_are_unique(any_items: list[dict[str, Any]]) -> None:
    counts = Counter(item["id"] for item in any_items)
    assert [i for i, c in counts.items() if c > 1] == []


def test_the_mix_matches_the_issue(items: list[dict[str, Any]], corpus: dict[str, str]) -> None:
    assert len(items) >= 60
    share = type_shares(items)
    assert {t: s for t, s in share.items() if not MIX[t][0] <= s <= MIX[t][1]} == {}
    single = {s for item in items if item["type"] == "corpus" for s in item["sources"]}
    assert len(single) >= 0.6 * (len(corpus) - 1), "single-document questions spread over most files"


def test_unanswerable_facts_are_absent_from_the_corpus(corpus: dict[str, str]) -> None:
    # Spot checks of what the unanswerable questions rely on (see evals/README.md).
    text = "\n".join(corpus.values()).lower()
    assert "banco delta" not in text
    assert "trump" not in text and "hillary" not in text
    assert "### coastline" not in corpus["cia-world-factbook-2016-japan.md"].lower()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "essay"}, "unknown type"),
        ({"history": [{"role": "user", "content": "hi"}]}, "history must be"),
        ({"key_facts": [["Strategic Patience"]]}, "lowercase"),
        ({"evidence": ["The Obama administration's strategic patience policy"]}, "verbatim"),
        ({"sources": ["nowhere.md"]}, "not a corpus document"),
        ({"key_facts": [["strategic patience"], ["kimchi"]]}, "kimchi"),
        ({"sources": [ARTICLE, ARTICLE], "evidence": ["a", "b"], "type": "corpus"}, "exactly one"),
    ],
)
def test_the_checks_catch_broken_items(
    items: list[dict[str, Any]], corpus: dict[str, str], change: dict[str, Any], expected: str
) -> None:
    good = next(item for item in items if item["id"] == "a01")
    assert golden_problems(good, corpus) == []
    broken = {**good, **change}
    assert any(expected in p for p in golden_problems(broken, corpus)), golden_problems(broken, corpus)


def test_a_missing_field_is_reported(items: list[dict[str, Any]], corpus: dict[str, str]) -> None:
    item = {k: v for k, v in items[0].items() if k != "evidence"}
    assert golden_problems(item, corpus) and "fields must be exactly" in golden_problems(item, corpus)[0]
