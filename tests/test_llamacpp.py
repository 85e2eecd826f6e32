"""The llamacpp answerer, condenser and judge over a fake ``llama_cpp.Llama`` (no weights)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rag.answering import AnswererError, prompts
from rag.answering.llamacpp import (
    LlamaCppAnswerer,
    LocalModel,
    answer_messages,
    judge_messages,
    llamacpp_condense,
    llamacpp_judge,
    llamacpp_verifier,
    parse_verdict,
    trim_passage,
)
from rag.config import Settings
from rag.retrieval import Passage
from tests.fakes import build_fake_assistant

JUDGE = prompts.load("judge")


class FakeLlama:
    """Speaks llama-cpp-python's streaming chat API; ``reply(messages)`` scripts the model."""

    def __init__(self, reply: Callable[[list[dict[str, str]]], str]) -> None:
        self.reply = reply
        self.calls: list[list[dict[str, str]]] = []
        self.kwargs: list[dict[str, Any]] = []

    def create_chat_completion(
        self, *, messages: list[dict[str, str]], stream: bool, **kw: Any
    ) -> Iterator[Any]:
        assert stream
        self.calls.append(messages)
        self.kwargs.append(kw)
        text = self.reply(messages)
        yield {"choices": [{"delta": {"role": "assistant"}}]}
        for i in range(0, len(text), 4):
            yield {"choices": [{"delta": {"content": text[i : i + 4]}}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def fake_model(reply: Callable[[list[dict[str, str]]], str]) -> tuple[LocalModel, FakeLlama]:
    llm = FakeLlama(reply)
    loads: list[int] = []

    def loader() -> FakeLlama:
        loads.append(1)
        assert len(loads) == 1, "the model must load once"
        return llm

    return LocalModel(loader), llm


def passage(text: str, n: int = 1, title: str = "Doc", section: str = "Sec") -> Passage:
    return Passage(f"c{n}", text, {"source": f"d{n}.md", "title": title, "section": section}, 0.9)


FOLLOWUP = prompts.load("judge_followup").split("{", 1)[0]


def substring_judge(answer: str) -> Callable[[list[dict[str, str]]], str]:
    """Answers with ``answer``; as judge (fresh prompt or follow-up question), says yes when the
    statement's words are all in the passage."""

    def verdict(claim: str, evidence: str) -> str:
        words = claim.lower().rstrip(".").split()
        return "Yes" if all(w in evidence.lower() for w in words) else "No"

    def reply(messages: list[dict[str, str]]) -> str:
        user = messages[-1]["content"]
        if messages[0]["content"] == JUDGE:
            evidence = user.split("Passage:\n", 1)[1].split("\n\nStatement:", 1)[0]
            return verdict(user.split("Statement: ", 1)[1].split("\n", 1)[0], evidence)
        if user.startswith(FOLLOWUP):
            n = user.split("passage [", 1)[1].split("]", 1)[0]
            shown = messages[-3]["content"]
            evidence = shown.split(f"[{n}] (", 1)[1].split("\n\n[", 1)[0]
            return verdict(user.split("Sentence: ", 1)[1].split("\n", 1)[0], evidence)
        return answer

    return reply


# --- prompt building ---------------------------------------------------------------------------


def test_prompt_puts_the_fixed_system_prompt_first_and_numbers_trimmed_passages() -> None:
    long_text = " ".join(f"Filler sentence number {i} about nothing." for i in range(40))
    long_text += " The coastline is 2,495 km long."
    passages = [
        passage(long_text, 1, "Factbook", "Geography"),
        passage("Kimchi is food.", 2),
        passage("x.", 3),
        passage("Dropped: only the best few passages are shown.", 4),
    ]
    history = [
        {"role": "user", "content": "Tell me about Korea"},
        {"role": "assistant", "content": "Korea is a peninsula [3]."},
    ]
    msgs = answer_messages("How long is the coastline?", passages, history, max_passages=3, passage_chars=200)
    system = prompts.load("answer_system").format(refusal=prompts.refusal())
    assert msgs[0] == {"role": "system", "content": system}
    # Then the fixed worked examples: an answer with markers, and a refusal.
    assert [m["role"] for m in msgs[1:5]] == ["user", "assistant", "user", "assistant"]
    assert msgs[2]["content"].endswith("[1].") and msgs[4]["content"] == prompts.refusal()
    # Old markers are stripped from history: they pointed at other passages.
    assert msgs[5:7] == [
        {"role": "user", "content": "Tell me about Korea"},
        {"role": "assistant", "content": "Korea is a peninsula."},
    ]
    user = msgs[-1]["content"]
    assert user.startswith("Passages:\n[1] (Factbook > Geography)\n")
    assert "The coastline is 2,495 km long." in user and "number 0 about" not in user
    assert "[2] (Doc > Sec)\nKimchi is food." in user
    assert "[4]" not in user and "Dropped" not in user
    expected_end = prompts.load("answer_user").split("{question}", 1)[1]
    assert user.endswith("Question: How long is the coastline?" + expected_end)
    # The same system prompt whatever the question: llama.cpp reuses its cached prefix.
    other = answer_messages("Something else?", passages[1:], [])
    assert other[0] == msgs[0]


def test_trim_passage_keeps_the_most_relevant_run_of_sentences() -> None:
    text = "Alpha one. Beta two. The GDP was 40 billion dollars. Gamma three. Delta four."
    assert trim_passage(text, "what was the GDP in dollars", 40) == "The GDP was 40 billion dollars."
    assert trim_passage(text, "anything", 1000) == text
    cut = trim_passage("word " * 100, "word", 30)
    assert len(cut) <= 32 and cut.endswith("…")


def test_judge_prompt_holds_instructions_passage_and_claim_without_markers() -> None:
    msgs = judge_messages("The coast is 2,495 km [1].", ["The coastline is 2,495 km."])
    assert msgs[0] == {"role": "system", "content": JUDGE}
    assert "Passage:\nThe coastline is 2,495 km." in msgs[1]["content"]
    assert "Statement: The coast is 2,495 km.\n" in msgs[1]["content"]


def test_parse_verdict() -> None:
    assert parse_verdict("yes") is True
    assert parse_verdict("**No**, it does not") is False
    assert parse_verdict("") is None
    assert parse_verdict("The passage says") is None


# --- the answerer ---------------------------------------------------------------------------------


def test_answerer_streams_tokens_and_loads_the_model_once() -> None:
    model, llm = fake_model(lambda m: "Seoul is the capital [1].")
    answerer = LlamaCppAnswerer(model, max_tokens=64)
    assert not model.loaded  # nothing loads before the first question
    pieces = list(answerer.stream("Capital?", [passage("Seoul is the capital.")], []))
    assert len(pieces) > 1 and "".join(pieces) == "Seoul is the capital [1]."
    list(answerer.stream("Capital again?", [passage("Seoul is the capital.")], []))
    assert len(llm.calls) == 2
    assert llm.kwargs[0]["max_tokens"] == 64 and llm.kwargs[0]["temperature"] == 0.0


def test_backend_failure_becomes_an_answerer_error() -> None:
    def broken(messages: list[dict[str, str]]) -> str:
        raise RuntimeError("llama_decode returned -1")

    answerer = LlamaCppAnswerer(fake_model(broken)[0])
    with pytest.raises(AnswererError, match="local model failed: RuntimeError"):
        list(answerer.stream("q", [passage("p")], []))


# --- verification through the real chain --------------------------------------------------------------


def test_chain_marks_each_sentence_by_the_judge(settings: Settings) -> None:
    text = "North Korea GDP was 40 billion dollars [1]. The GDP tripled since 1990 [1]. Kimchi is tasty."
    model, llm = fake_model(substring_judge(text))
    assistant = build_fake_assistant(
        settings, answerer=LlamaCppAnswerer(model), verifier=llamacpp_verifier(settings, model)
    )
    answer = assistant.ask("What was North Korea's GDP in 2015?")
    assert answer.mode == "llamacpp"
    verdicts = {s.text: s.supported for s in answer.sentences}
    assert verdicts == {
        "North Korea GDP was 40 billion dollars [1].": True,  # quoted: no judge call needed
        "The GDP tripled since 1990 [1].": False,  # judged: not in the passage
        "Kimchi is tasty.": False,  # uncited: unsupported without asking
    }
    # One judgement, asked as the next turn of the answer's own (cached) chat.
    answer_chat, *judged = llm.calls
    assert len(judged) == 1
    assert judged[0][: len(answer_chat)] == answer_chat
    assert judged[0][len(answer_chat)] == {"role": "assistant", "content": text}
    assert "Sentence: The GDP tripled since 1990.\n" in judged[0][-1]["content"]


def test_verifier_judges_unseen_passages_in_a_fresh_prompt() -> None:
    def reply(messages: list[dict[str, str]]) -> str:
        if messages[0]["content"] == JUDGE:
            return "no" if "Japan" in messages[-1]["content"] else "yes"
        return "Seoul is the capital [1]."

    model, llm = fake_model(reply)
    shown = passage("Seoul is the capital of South Korea.", 1)
    unseen = passage("Pyongyang is the capital of North Korea.", 5)
    list(LlamaCppAnswerer(model, max_passages=1).stream("Capital?", [shown, unseen], []))
    verify = llamacpp_verifier(Settings(_env_file=None), model)  # type: ignore[call-arg]
    # Passage [5] was never shown to the model: its chat cannot be reused to judge against it.
    assert verify("Pyongyang is the North Korean seat of government [5].", [unseen]) is True
    assert verify("Pyongyang is the capital city of Japan [5].", [unseen]) is False
    assert [c[0]["content"] == JUDGE for c in llm.calls] == [False, True, True]
    assert "Passage:\n(Doc > Sec)\nPyongyang is the capital of North Korea." in llm.calls[1][1]["content"]


def test_chain_drops_unsupported_sentences_when_asked(tmp_path: Any) -> None:
    from tests.conftest import make_settings
    from tests.fakes import write_corpus

    write_corpus(tmp_path / "corpus")
    s = make_settings(tmp_path, drop_unsupported=True)
    model, _ = fake_model(
        substring_judge("The GDP tripled since 1990 [1]. North Korea GDP was 40 billion dollars [1].")
    )
    answer = build_fake_assistant(
        s, answerer=LlamaCppAnswerer(model), verifier=llamacpp_verifier(s, model)
    ).ask("What was North Korea's GDP in 2015?")
    assert answer.answer == "North Korea GDP was 40 billion dollars [1]."
    assert [x.supported for x in answer.sentences] == [True]


def assistant_with_fallback(settings: Settings, model: Any) -> Any:
    """The llamacpp answerer and judge over ``model``, falling back to extractive answers."""
    from rag.answering.extractive import ExtractiveAnswerer
    from tests.fakes import HashingEmbeddings

    embeddings = HashingEmbeddings()
    return build_fake_assistant(
        settings,
        embeddings=embeddings,
        answerer=LlamaCppAnswerer(model),
        verifier=llamacpp_verifier(settings, model),
        fallback=ExtractiveAnswerer(embeddings, min_score=0.1),
    )


def test_chain_falls_back_to_quotes_when_no_sentence_holds_up(settings: Settings) -> None:

    model, _ = fake_model(substring_judge("The coastline is 9,000 km long [1]."))
    answer = assistant_with_fallback(settings, model).ask("How long is the coastline?")
    assert answer.mode == "extractive"
    assert "2,495 km" in answer.answer and "9,000" not in answer.answer
    assert "not supported" in (answer.note or "")


def test_chain_falls_back_when_the_model_fails(settings: Settings) -> None:
    def broken(messages: list[dict[str, str]]) -> str:
        raise OSError("cannot map model file")

    model, _ = fake_model(broken)
    answer = assistant_with_fallback(settings, model).ask("How long is the coastline?")
    assert answer.mode == "extractive" and "2,495 km" in answer.answer
    assert "local model failed" in (answer.note or "")


def test_verifier_reports_no_verdict_when_the_judge_fails() -> None:
    calls = []

    def broken(messages: list[dict[str, str]]) -> str:
        calls.append(1)
        raise RuntimeError("boom")

    verify = llamacpp_verifier(Settings(_env_file=None), fake_model(broken)[0])  # type: ignore[call-arg]
    assert verify("Paris is in France [1].", [passage("Paris is in France.")]) is True  # quote: no model
    assert calls == []
    assert verify("Paris is big.", [passage("Lyon is in France.")]) is None
    assert verify("Anything.", []) is False


def test_judge_for_evals_says_yes_no_or_cannot_tell() -> None:
    replies = iter(["yes", "no", "I think so"])
    judge = llamacpp_judge(Settings(_env_file=None), fake_model(lambda m: next(replies))[0])  # type: ignore[call-arg]
    evidence = [passage("p")]
    assert [judge("c", evidence), judge("c", evidence), judge("c", evidence)] == [True, False, None]


# --- condensing ---------------------------------------------------------------------------------------


def test_condense_asks_the_model_only_for_follow_ups() -> None:
    model, llm = fake_model(lambda m: "What is North Korea's GDP?\nextra line")
    condense = llamacpp_condense(Settings(_env_file=None), model)  # type: ignore[call-arg]
    history = [
        {"role": "user", "content": "Tell me about North Korea"},
        {"role": "assistant", "content": "A country [1]."},
    ]
    assert condense("And its GDP?", history) == "What is North Korea's GDP?"
    assert "Tell me about North Korea" in llm.calls[0][0]["content"]
    assert "[1]" not in llm.calls[0][0]["content"]
    standalone = "How long is the coastline of South Korea in kilometres?"
    assert condense(standalone, history) == standalone
    assert condense("And its GDP?", []) == "And its GDP?"
    assert len(llm.calls) == 1
