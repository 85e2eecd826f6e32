"""The local model as judge: quotes are shown only when the judge finds they state the answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.answering import prompts
from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.judged import JudgedAnswerer
from rag.retrieval import Passage
from tests.fakes import HashingEmbeddings

PASSAGE = Passage(
    "c1",
    "The Agreed Framework was signed in Geneva in October 1994. It froze the plutonium reactor at Yongbyon.",
    {"source": "history.md", "title": "History", "section": "1994"},
    0.8,
)
QUESTION = "When was the Agreed Framework signed in Geneva?"


def recording(margin: float) -> tuple[Callable[[str, str], float], list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    def judge(system: str, user: str) -> float:
        seen.append((system, user))
        return margin

    return judge, seen


def answerer(judge: Callable[[str, str], float], **kwargs: object) -> JudgedAnswerer:
    extractive = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0, max_sentences=1)
    return JudgedAnswerer(extractive, judge, min_margin=-1.0, **kwargs)  # type: ignore[arg-type]


def test_quotes_the_extractive_sentences_when_the_judge_says_yes() -> None:
    judge, seen = recording(2.0)
    text = "".join(answerer(judge).stream(QUESTION, [PASSAGE], []))
    assert text == "The Agreed Framework was signed in Geneva in October 1994. [1]"
    system, user = seen[0]
    assert system == prompts.load("judge_answer_system")
    assert f"Question: {QUESTION}" in user and "- The Agreed Framework was signed in Geneva" in user


def test_refuses_when_the_judge_says_no() -> None:
    judge, _ = recording(-3.0)
    assert "".join(answerer(judge).stream(QUESTION, [PASSAGE], [])) == prompts.refusal()


def test_the_judge_s_no_is_the_refusal_s_note() -> None:
    judge, _ = recording(-3.0)
    judged = answerer(judge)
    assert "".join(judged.stream(QUESTION, [PASSAGE], [])) == prompts.refusal()
    assert judged.why_refused(QUESTION, [PASSAGE]) == (
        "the local model judged that the closest passages do not state the answer (margin -3.0)"
    )
    assert judged.why_refused("Who signed it?", [PASSAGE]) is None  # not refused by the judge


def test_nothing_to_quote_is_refused_without_asking_the_judge() -> None:
    judge, seen = recording(5.0)
    assert "".join(answerer(judge).stream(QUESTION, [], [])) == prompts.refusal()
    assert seen == []


def test_a_followup_is_judged_as_its_standalone_question() -> None:
    judge, seen = recording(1.0)
    history = [{"role": "user", "content": "What is the Agreed Framework?"}]

    def condense(question: str, turns: object) -> str:
        return f"What is the Agreed Framework? {question}"

    list(answerer(judge, condense=condense).stream("When was it signed?", [PASSAGE], history))
    assert "Question: What is the Agreed Framework? When was it signed?" in seen[0][1]


def test_the_chain_shows_the_judge_s_no_as_the_note(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from tests.fakes import build_fake_assistant, write_corpus

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)
    judge, _ = recording(-3.0)
    extractive = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0)
    assistant = build_fake_assistant(settings, answerer=JudgedAnswerer(extractive, judge, min_margin=-1.0))
    refused = assistant.ask("What share of North Korea's trade does China account for?")
    assert refused.refused and refused.note is not None
    assert refused.note.startswith("the local model judged that the closest passages do not state the answer")
