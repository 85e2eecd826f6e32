from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.answering import Answer, Delta, QuestionError, prompts
from rag.answering.chat_model import ChatModelAnswerer
from rag.answering.citations import clean_markers
from rag.answering.condense import heuristic_condense
from rag.config import Settings
from rag.retrieval import Passage
from rag.text import split_claims, split_sentences
from tests.fake_openai import fake_openai
from tests.fakes import build_fake_assistant

JSON_KEYS = {"question", "answer", "refused", "citations", "retrieved", "mode", "timings_ms"}
CITATION_KEYS = {
    "n",
    "source",
    "title",
    "author",
    "publication",
    "section",
    "url",
    "chunk_id",
    "text",
    "quote",
    "score",
}


def fake_llm(text: str) -> ChatModelAnswerer:
    return ChatModelAnswerer(GenericFakeChatModel(messages=iter([AIMessage(content=text)])), name="fake")


def test_extractive_answer_cites_the_passage_it_quotes(settings: Settings) -> None:
    assistant = build_fake_assistant(settings)
    answer = assistant.ask("Which policy proved to be an immense failure?")
    assert not answer.refused
    assert "strategic patience" in answer.answer
    assert answer.citations, answer.answer
    first = answer.citations[0]
    assert first.passage.source == "article.md"
    assert first.quote in first.passage.text
    assert "immense failure" in first.quote
    assert all(s.supported for s in answer.sentences)
    assert f"[{first.n}]" in answer.answer


def test_json_shape_matches_the_documented_output(settings: Settings) -> None:
    data = build_fake_assistant(settings).ask("How long is the coastline?").to_dict()
    assert JSON_KEYS <= set(data)
    assert data["citations"] and CITATION_KEYS == set(data["citations"][0])
    cite = data["citations"][0]
    assert cite["source"] == "factbook.md" and cite["section"] == "Geography > Coastline"
    assert cite["url"] == "https://example.org/factbook"
    assert (cite["author"], cite["publication"]) == ("", "")  # the factbook names no author
    assert "2,495 km" in data["answer"]
    assert {"source", "chunk_id", "score", "text"} <= set(data["retrieved"][0])
    assert {"retrieve", "answer", "total"} <= set(data["timings_ms"])
    json.dumps(data)  # serialisable as is


def test_streaming_yields_deltas_then_the_answer(settings: Settings) -> None:
    events = list(build_fake_assistant(settings).stream("How long is the coastline?"))
    assert isinstance(events[-1], Answer)
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert deltas and "".join(deltas).strip() == events[-1].answer


def test_invalid_markers_are_removed_and_valid_ones_kept(settings: Settings) -> None:
    llm = fake_llm("The policy was strategic patience [1][7]. It failed [99].")
    answer = build_fake_assistant(settings, answerer=llm).ask("What policy failed?")
    assert "[7]" not in answer.answer and "[99]" not in answer.answer
    assert "[1]" in answer.answer
    assert [c.n for c in answer.citations] == [1]
    assert answer.sentences[1].citations == [] and answer.sentences[1].supported is False


def test_a_passage_cited_twice_is_quoted_by_its_first_claim(settings: Settings) -> None:
    # The second claim shares more words with "Talks are a sign of strength." than the first
    # does with its own sentence: the quote still backs the answer's first sentence.
    text = "It proved to be an immense failure [1]. Talks are a sign of strength, talks are strength [1]."
    answer = build_fake_assistant(settings, answerer=fake_llm(text)).ask("What policy failed?")
    assert [c.n for c in answer.citations] == [1]
    assert "immense failure" in answer.citations[0].quote


def test_unsupported_generated_sentence_is_marked_and_can_be_dropped(
    settings: Settings, tmp_path: Path
) -> None:
    text = "The strategic patience policy has proved to be an immense failure [1]. The moon is cheese [1]."
    answer = build_fake_assistant(settings, answerer=fake_llm(text)).ask("What policy failed?")
    assert [s.supported for s in answer.sentences] == [True, False]

    strict = Settings(
        _env_file=None,
        corpus_dir=settings.corpus_dir,
        data_dir=tmp_path / "d2",  # type: ignore[call-arg]
        min_relevance=0.05,
        drop_unsupported=True,
    )
    answer = build_fake_assistant(strict, answerer=fake_llm(text)).ask("What policy failed?")
    assert "cheese" not in answer.answer and "immense failure" in answer.answer


def test_no_relevant_passage_means_a_plain_refusal(settings: Settings, tmp_path: Path) -> None:
    strict = Settings(
        _env_file=None,
        corpus_dir=settings.corpus_dir,
        data_dir=tmp_path / "d3",  # type: ignore[call-arg]
        min_relevance=0.9,
    )
    answer = build_fake_assistant(strict).ask("What is the airspeed of an unladen swallow?")
    assert answer.refused and answer.answer == prompts.refusal() and answer.citations == []
    assert answer.note is not None and answer.note.startswith("no passage is close to the question")
    assert answer.note.endswith("the threshold is 0.90)")


def test_answerer_refusal_phrase_cites_nothing(settings: Settings) -> None:
    answer = build_fake_assistant(settings, answerer=fake_llm(prompts.refusal() + " [1]")).ask(
        "Who won in 2016?"
    )
    assert answer.refused and answer.citations == [] and answer.answer == prompts.refusal()


@pytest.mark.parametrize("question", ["", "   \n\t ", "\x00\x01"])
def test_empty_questions_are_rejected_clearly(settings: Settings, question: str) -> None:
    with pytest.raises(QuestionError, match="type a question"):
        build_fake_assistant(settings).ask(question)


def test_too_long_question_is_rejected_clearly(settings: Settings) -> None:
    with pytest.raises(QuestionError, match="limit is 2,000"):
        build_fake_assistant(settings).ask("why " * 30_000)


def test_followup_uses_the_history(settings: Settings) -> None:
    history = [
        {"role": "user", "content": "Which policy was an immense failure according to the article?"},
        {"role": "assistant", "content": "Strategic patience [1]."},
    ]
    answer = build_fake_assistant(settings).ask("Who is the author?", history)
    assert "immense failure" in answer.standalone_question
    assert "Jane Writer" in answer.answer
    assert answer.citations[0].passage.source == "article.md"


@pytest.mark.parametrize(
    ("question", "history"),
    [
        ("Which policy was an immense failure according to the article?", []),
        (
            "Who is the author?",
            [
                {"role": "user", "content": "Which policy was an immense failure according to the article?"},
                {"role": "assistant", "content": "Strategic patience [1]."},
            ],
        ),
    ],
)
def test_a_deeper_ranking_begins_with_the_passages_the_answer_saw(
    settings: Settings, question: str, history: list[dict[str, str]]
) -> None:
    """The eval asks the chain for 10 passages: the answer and its first top_k passages are
    those of a plain ask, and the chain's retrieval steps alone give the same ranking."""
    assistant = build_fake_assistant(settings)
    plain = assistant.ask(question, history)
    deep = assistant.ask(question, history, k=8)
    ids = [p.chunk_id for p in deep.retrieved]
    assert len(plain.retrieved) == settings.top_k < len(deep.retrieved) <= 8  # 6 chunks in all
    assert ids[: settings.top_k] == [p.chunk_id for p in plain.retrieved]
    assert deep.answer == plain.answer
    assert [c.as_dict() for c in deep.citations] == [c.as_dict() for c in plain.citations]
    turn = assistant.retrieve(question, history, k=8)
    assert [p.chunk_id for p in turn.passages] == ids and turn.standalone == deep.standalone_question
    with pytest.raises(ValueError, match="k must be"):
        assistant.ask(question, history, k=0)


def test_heuristic_condense_leaves_standalone_questions_alone() -> None:
    history = [{"role": "user", "content": "Tell me about kimchi"}]
    q = "What is the GDP of North Korea in 2015 according to the factbook?"
    assert heuristic_condense(q, history) == q
    assert heuristic_condense("And its coastline?", history).startswith("Tell me about kimchi")


def test_heuristic_condense_takes_a_definite_reference_to_the_last_answer_for_a_follow_up() -> None:
    history = [
        {"role": "user", "content": "Which provocations does the 2016 sanctions law list?"},
        {"role": "assistant", "content": "The sinking of the Cheonan and the shelling of Yeonpyeong Island."},
    ]
    follow_up = "how many people died in the island shelling?"
    assert heuristic_condense(follow_up, history) == f"{history[0]['content']} {follow_up}"
    # Words the user had already used, or a "the ..." naming something new, start a new topic.
    for standalone in (
        "What does the 2016 sanctions law say about cyberattacks?",
        "How many people live in the capital of Japan?",
    ):
        assert heuristic_condense(standalone, history) == standalone


def test_sentence_splitting_and_marker_cleaning() -> None:
    assert split_sentences("The U.S. and Mr. Kim met [1]. Then - total: 5 km\n- land: 3 km") == [
        "The U.S. and Mr. Kim met [1].",
        "Then - total: 5 km",
        "- land: 3 km",
    ]
    assert clean_markers("A [1, 2, 9]. B [3].", {1, 2}) == "A [1][2]. B."


def test_an_enumerator_inside_a_sentence_does_not_split_it() -> None:
    # pysbd takes "(a)" and "0." for the start of a list item; the sentence runs on, verbatim.
    law = (
        "A ban under subsection (a). [3] Sanctions in section 6(a) of the Act [5] "
        "(II) sold to a person (other than one in subsection (b)); or [2]"
    )
    assert split_sentences(law) == [
        "A ban under subsection (a). [3]",
        "Sanctions in section 6(a) of the Act [5]",
        "(II) sold to a person (other than one in subsection (b)); or [2]",
    ]
    sites = "Rods were kept at site 0. Fuel was stored at site 1. Nothing was at site 2."
    assert split_sentences(sites) == [
        "Rods were kept at site 0.",
        "Fuel was stored at site 1.",
        "Nothing was at site 2.",
    ]
    assert split_sentences("He left. (a) Then he came back.") == ["He left.", "(a) Then he came back."]


def test_every_marker_closes_a_claim_of_an_answer_but_not_a_telephone_number_in_a_passage() -> None:
    answer = "Minimum age for voluntary service (2012) [1] 20-30 years of age [3] revised 2009 [2]"
    assert split_claims(answer) == [
        "Minimum age for voluntary service (2012) [1]",
        "20-30 years of age [3]",
        "revised 2009 [2]",
    ]
    assert split_sentences("The embassy is in Tehran; telephone [98] 21 2254 2178.") == [
        "The embassy is in Tehran; telephone [98] 21 2254 2178."
    ]


def test_openai_answerer_against_a_fake_server(settings: Settings, tmp_path: Path) -> None:
    reply = "China accounts for 70 percent of North Korea's trade [1]."
    with fake_openai(reply) as server:
        s = Settings(
            _env_file=None,
            corpus_dir=settings.corpus_dir,
            data_dir=tmp_path / "d4",  # type: ignore[call-arg]
            min_relevance=0.05,
            answerer="openai",
            openai_base_url=server["url"],
            openai_model="tiny",
            openai_api_key="sk-test",
        )
        from rag.answering.assistant import build_answerer
        from tests.fakes import HashingEmbeddings

        emb = HashingEmbeddings()
        assistant = build_fake_assistant(s, embeddings=emb, answerer=build_answerer(s, emb))
        events = list(assistant.stream("How much of North Korea's trade is with China?"))
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.mode == "openai"
    assert len([e for e in events if isinstance(e, Delta)]) > 3  # streamed word by word
    assert answer.answer == reply and answer.citations[0].passage.source == "article.md"
    assert answer.sentences[0].supported is True
    request = server["requests"][0]
    assert request["body"]["model"] == "tiny" and request["auth"] == "Bearer sk-test"
    system, user = request["body"]["messages"][0], request["body"]["messages"][-1]
    assert prompts.refusal() in system["content"]
    assert "[1]" in user["content"] and "70 percent" in user["content"]


def test_openai_backend_down_falls_back_to_extractive(settings: Settings, tmp_path: Path) -> None:
    from rag.answering.assistant import build_answerer
    from rag.answering.extractive import ExtractiveAnswerer
    from tests.fakes import HashingEmbeddings

    with fake_openai("unused", status=500) as server:
        s = Settings(
            _env_file=None,
            corpus_dir=settings.corpus_dir,
            data_dir=tmp_path / "d5",  # type: ignore[call-arg]
            min_relevance=0.05,
            answerer="openai",
            openai_base_url=server["url"],
        )
        emb = HashingEmbeddings()
        assistant = build_fake_assistant(
            s,
            embeddings=emb,
            answerer=build_answerer(s, emb),
            fallback=ExtractiveAnswerer(emb, min_score=0.1),
        )
        answer = assistant.ask("How long is the coastline?")
    assert answer.mode == "extractive" and "2,495 km" in answer.answer
    assert answer.note and "openai answer backend failed" in answer.note


def test_followup_searches_the_documents_the_last_answer_cited(settings: Settings) -> None:
    history = [
        {"role": "user", "content": "Tell me about kimchi"},
        {"role": "assistant", "content": "It is fermented [1].", "sources": ["article.md"]},
    ]
    answer = build_fake_assistant(settings).ask("Who is the author?", history)
    # The previous question alone points at notes.txt; the cited file wins for the follow-up.
    assert "Jane Writer" in answer.answer


def test_sentence_splitting_is_safe_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Claim {i} holds here. Another point {i} follows. Last one {i}." for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(split_sentences, texts))
    for i, sentences in enumerate(results):
        assert sentences == [f"Claim {i} holds here.", f"Another point {i} follows.", f"Last one {i}."]


def _passage(text: str, chunk_id: str) -> Passage:
    return Passage(chunk_id, text, {"source": "doc.md", "title": "Doc", "section": "History"}, 0.8)


def test_extractive_never_quotes_a_sentence_twice_from_overlapping_chunks() -> None:
    from rag.answering.extractive import candidates as offered_by

    shared = "KEDO halted the reactor project in 2006 after years of delay."
    first = _passage(f"The reactors were to replace graphite units. {shared}", "c1")
    # The next chunk starts inside the same sentence (chunk overlap), then goes on.
    second = _passage(f"{shared[6:]} Construction had reached about a third.", "c2")
    offered = [c.shown for c in offered_by([first, second])]
    assert shared in offered
    assert shared[6:] not in offered
    assert any(o.endswith("Construction had reached about a third.") for o in offered)


def test_extractive_quotes_the_sentence_a_pronoun_refers_back_to() -> None:
    from rag.answering.extractive import ExtractiveAnswerer
    from tests.fakes import HashingEmbeddings

    passage = _passage(
        "The Agreed Framework was signed in Geneva in October 1994. It froze the plutonium"
        " reactor at Yongbyon in exchange for fuel oil deliveries.",
        "c1",
    )
    picked = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0, max_sentences=1).select(
        "What did it freeze in exchange for fuel oil at the plutonium reactor at Yongbyon?", [passage]
    )
    quoted = [sentence for _, sentence in picked]
    assert quoted[-1].startswith("It froze")
    assert quoted[0] == "The Agreed Framework was signed in Geneva in October 1994."


class _PronounFirst:
    """Embeddings under which the sentence opening with "It" is the closest to any question and
    the sentence before it a close second."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "It froze" in t else [0.9, 0.436] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return [1.0, 0.0]


def test_extractive_never_quotes_the_sentence_a_pronoun_refers_to_twice() -> None:
    from rag.answering.extractive import ExtractiveAnswerer

    passage = _passage(
        "The Agreed Framework was signed in Geneva in October 1994. It froze the plutonium"
        " reactor at Yongbyon in exchange for fuel oil.",
        "c1",
    )
    picked = ExtractiveAnswerer(_PronounFirst(), min_score=-1.0, max_sentences=2).select(  # type: ignore[arg-type]
        "What happened next?", [passage]
    )
    quoted = [sentence for _, sentence in picked]
    assert quoted == [
        "The Agreed Framework was signed in Geneva in October 1994.",
        "It froze the plutonium reactor at Yongbyon in exchange for fuel oil.",
    ]


def test_a_documents_own_bracketed_number_is_quoted_whole_and_cites_nothing() -> None:
    from rag.answering.citations import markers_in
    from rag.answering.extractive import ExtractiveAnswerer, quoted
    from rag.answering.verification import verify_by_match
    from tests.fakes import HashingEmbeddings

    # The Factbooks write telephone numbers with the country code in brackets, as a marker looks.
    passage = _passage(
        "Diplomatic representation:\n- telephone: [82] (2) 397-4114\n- FAX: [82] (2) 725-0152", "c1"
    )
    picked = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0, max_sentences=1).select(
        "What is the embassy's telephone number?", [passage]
    )
    answer = "".join(quoted(picked))
    assert "(82) (2) 397-4114 [1]" in answer or "(82) (2) 725-0152 [1]" in answer
    assert set(markers_in(answer)) == {1}
    claims = split_claims(answer)
    assert claims and all(verify_by_match(claim, [passage]) for claim in claims)


def test_a_numbered_list_item_is_quoted_as_one_cited_claim_without_its_number() -> None:
    from rag.answering.extractive import ExtractiveAnswerer, candidates, quoted
    from rag.answering.verification import verify_by_match
    from tests.fakes import HashingEmbeddings

    # Quoted with its number, "Full members: 28. Russia (suspended) [1]" split into a claim
    # "Full members: 28." that cited nothing.
    passage = Passage(
        chunk_id="c1",
        text="27. Portugal\n28. Russia (suspended)\n29. Saudi Arabia",
        similarity=0.9,
        metadata={"source": "fatf.md", "title": "FATF", "section": "Members > Full members"},
    )
    assert [c.shown for c in candidates([passage])][1] == "Full members: Russia (suspended)"
    picked = ExtractiveAnswerer(HashingEmbeddings(), min_score=-1.0, max_sentences=3).select(
        "Which members are suspended?", [passage]
    )
    answer = "".join(quoted(picked))
    assert "Full members: Russia (suspended) [1]" in answer
    claims = split_claims(answer)
    assert len(claims) == len(picked)
    assert all(verify_by_match(claim, [passage]) for claim in claims)


def test_a_leading_minus_sign_or_emphasis_is_not_a_list_marker() -> None:
    from rag.answering.extractive import candidates

    passage = Passage(
        chunk_id="c1",
        text="- 1,607 km\n-0.4% of GDP (2007 est.)\n**KEDO** was founded in 1995 to build two reactors.",
        similarity=0.9,
        metadata={"source": "fb.md", "title": "Factbook", "section": "Economy > Budget deficit"},
    )
    shown = [c.shown for c in candidates([passage])]
    assert shown[0] == "Budget deficit: 1,607 km"  # a bullet and its space go
    assert "Budget deficit: -0.4% of GDP (2007 est.)" in shown  # a deficit keeps its sign
    assert "**KEDO** was founded in 1995 to build two reactors." in shown
