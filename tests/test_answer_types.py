"""Answer types: what a question asks for, whether a sentence gives it, and how the extractive
answerer uses that to pick a sentence or refuse (fake embeddings, a one-feature ranker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answering import prompts
from rag.answering.answer_types import Asked, asked_for, gives
from rag.answering.extractive import ExtractiveAnswerer
from rag.retrieval import Passage
from tests.fakes import HashingEmbeddings
from tests.test_ranking import one_hot_ranker


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("On what date did KEDO break ground at Kumho?", "date"),
        ("What exact day was the op-ed published?", "date"),
        ("How much money does North Korea earn from workers abroad?", "money"),
        ("How much did the reactor project cost?", "money"),
        ("How many centrifuges was Iran running?", "count"),
        ("When did KEDO break ground?", None),  # a year is enough for "when": not checked
        ("Why did the Soviet Union boycott the Council?", None),
        (
            "Who signed the treaty in Geneva, and how many states joined it later?",
            None,
        ),  # two parts: one may be answered
        ("The law counts FATF members. How many does Wikipedia give?", None),  # context first
        ("The article mentions 2016. How many tests followed?", None),  # context ending in a year
        ("How many banks did the U.S. Treasury name?", "count"),  # an abbreviation is no break
        ("The law counts FATF members. How many does Wikipedia list?", None),  # an acronym ends one
    ],
)
def test_the_kind_asked_for(question: str, kind: str | None) -> None:
    found = asked_for(question)
    assert (found.kind if found else None) == kind


def test_the_counted_thing_is_the_words_after_how_many() -> None:
    assert asked_for("How many political prison camps does it run?") == Asked(
        "count", ("polit", "priso", "camps")
    )
    assert asked_for("How many sailors died in the sinking?") == Asked("count", ("sailo",))
    assert asked_for("How many people live in the capital?") == Asked("count", ())  # any number


def test_a_count_is_a_number_beside_the_counted_thing() -> None:
    camps = asked_for("How many prison camps does North Korea run?")
    assert camps is not None
    assert not gives(
        camps, "The prison camps, which are brutal, hold as many as 200,000 men, women and children.", ""
    )
    assert gives(camps, "North Korea runs 6 prison camps.", "")
    treaty = asked_for("With how many Allied nations did the treaty end the war?")
    assert treaty is not None
    assert gives(treaty, "The treaty ended the state of war between Japan and 47 of the Allies.", "")


def test_what_the_question_already_holds_does_not_count() -> None:
    question = "On what date in 2012 did the satellite launch end the deal?"
    date = asked_for(question)
    assert date is not None
    assert not gives(date, "The 2012 deal collapsed after a satellite launch.", question)
    assert gives(date, "The satellite was launched on April 13, 2012.", question)
    count = asked_for("How many of the 5 members hold a veto?")
    assert count is not None and not gives(
        count, "All 5 members hold a veto.", "How many of the 5 members hold a veto?"
    )


def test_a_year_the_question_pins_must_be_the_sentence_s() -> None:
    question = "How many defectors reached the South in 2015?"
    count = asked_for(question)
    assert count is not None
    assert not gives(count, "Between 1994 and 2003 the South admitted 3,800 defectors.", question)
    assert gives(count, "In 2015, 1,275 defectors reached the South.", question)
    assert gives(count, "About 1,300 defectors arrive a year.", question)  # no year: not contradicted


def test_money_needs_a_currency() -> None:
    question = "How much money did Japan pay for the reactors?"
    money = asked_for(question)
    assert money is not None
    assert not gives(money, "Japan paid for a share of the reactors.", question)
    assert gives(money, "Japan paid $1 billion for the reactors.", question)


def _passage(text: str, n: int) -> Passage:
    meta = {"source": "kedo.md", "title": "KEDO", "section": "History"}
    return Passage(chunk_id=f"c{n}", text=text, metadata=meta, similarity=0.9 - n / 10)


PASSAGES = [
    _passage("KEDO broke ground at Kumho in 1997. The reactors were never finished.", 0),
    _passage("Work stopped in 2003. The site employed 1,500 workers at its peak.", 1),
]


def one_sentence_answerer(*, answer_types: bool) -> ExtractiveAnswerer:
    """One quoted sentence, passages in rank order: what the checks change is easy to see."""
    return ExtractiveAnswerer(
        HashingEmbeddings(),
        min_score=-1.0,
        max_sentences=1,
        ranker=one_hot_ranker("passage_rank"),
        answer_types=answer_types,
    )


def test_the_answerer_quotes_a_sentence_that_gives_the_count_or_refuses() -> None:
    answerer = one_sentence_answerer(answer_types=True)
    picked = answerer.select("How many workers did the Kumho site employ?", PASSAGES)
    assert "1,500 workers" in picked[-1][1]
    # Nothing among the candidates counts reactors: the refusal, not a quote about reactors.
    assert answerer.select("How many reactors were planned at Kumho?", PASSAGES) == []
    assert answerer.select("On what date did KEDO break ground?", PASSAGES) == []
    # Off, the best-ranked sentence is quoted whatever it holds.
    off = one_sentence_answerer(answer_types=False)
    assert off.select("How many reactors were planned at Kumho?", PASSAGES) == [
        (1, "KEDO broke ground at Kumho in 1997.")
    ]


def test_settings_switch_answer_types() -> None:
    from rag.answering.assistant import build_extractive
    from rag.config import Settings

    emb = HashingEmbeddings()
    assert build_extractive(Settings(_env_file=None), emb).answer_types is True  # type: ignore[call-arg]
    assert build_extractive(Settings(_env_file=None, answer_types=False), emb).answer_types is False  # type: ignore[call-arg]


def test_a_year_the_question_names_must_be_in_a_quoted_passage() -> None:
    answerer = one_sentence_answerer(answer_types=True)
    # The passages speak of 1997 and 2003 only: not an answer about 2016.
    assert answerer.select("Why did work at the Kumho site stop in 2016?", PASSAGES) == []
    assert answerer.select("What happened at the Kumho site in 1997?", PASSAGES) != []
    # The year may be the document's: its title, section or publication.
    dated = [
        Passage(
            chunk_id="d",
            text="The site employed 1,500 workers.",
            similarity=0.8,
            metadata={"source": "kedo.md", "title": "KEDO in 2016", "section": "Staff"},
        )
    ]
    assert answerer.select("Who worked at the Kumho site in 2016?", dated) != []
    # Or what its front matter says of it: a law's sections never print the year it was enacted.
    law = [
        Passage(
            chunk_id="l",
            text="The President may suspend the sanctions for up to one year.",
            similarity=0.8,
            metadata={"source": "law.md", "title": "Sanctions Act", "note": "Enacted Feb. 18, 2016."},
        )
    ]
    assert law[0].about == "Enacted Feb. 18, 2016."
    assert answerer.select("How long can the President suspend the 2016 sanctions?", law) != []
    assert answerer.select("How long can the President suspend the 2017 sanctions?", law) == []
    # Two parts: the year may belong to the other part.
    assert (
        answerer.select("Why did work stop at Kumho, and what happened in 2016 to the site?", PASSAGES) != []
    )
    later = "Did work stop at Kumho, and in which years did it go on after 2016?"
    assert answerer.select(later, PASSAGES) != []


def test_the_refusal_says_what_the_close_passages_lack() -> None:
    answerer = one_sentence_answerer(answer_types=True)
    assert answerer.why_refused("How many reactors were planned at Kumho?", PASSAGES) == (
        "none of the closest passages gives that number"
    )
    assert answerer.why_refused("On what date did KEDO break ground?", PASSAGES) == (
        "none of the closest passages gives a date"
    )
    assert answerer.why_refused("Why did work at the Kumho site stop in 2016?", PASSAGES) == (
        "the closest passages do not mention 2016"
    )
    assert answerer.why_refused("How many workers did the Kumho site employ?", PASSAGES) is None  # answered


def test_the_reason_reuses_the_refused_selection() -> None:
    answerer = one_sentence_answerer(answer_types=True)
    embeddings = answerer.embeddings
    assert isinstance(embeddings, HashingEmbeddings)
    question = "How many reactors were planned at Kumho?"
    assert "".join(answerer.stream(question, PASSAGES, [])) == prompts.refusal()
    calls = embeddings.calls
    assert answerer.why_refused(question, PASSAGES) == "none of the closest passages gives that number"
    assert embeddings.calls == calls  # no second embedding pass
    assert answerer.why_refused("How many workers did the Kumho site employ?", PASSAGES) is None
    assert embeddings.calls > calls  # another question is worked out afresh


def test_the_chain_puts_the_reason_in_the_answer_s_note(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from tests.fakes import build_fake_assistant, write_corpus

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)
    answerer = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0, answer_types=True)
    assistant = build_fake_assistant(settings, answerer=answerer)
    refused = assistant.ask("On what date did China's share of North Korea's trade reach 70 percent?")
    assert refused.refused and refused.note == "none of the closest passages gives a date"
    answered = assistant.ask("What share of North Korea's trade does China account for?")
    assert not answered.refused and answered.note is None
