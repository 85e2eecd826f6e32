"""Typo correction of questions (rag/retrieval/spelling.py): only words nobody knows are changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.index.lexical import LexicalIndex
from rag.retrieval.spelling import SpellingCorrector

INDEX_WORDS = {"article", "military", "sanctions", "depetris", "mtcr", "yeonpyeong", "korea"}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What does the artcle say?", "What does the article say?"),
        ("Does Japan have a militery draft?", "Does Japan have a military draft?"),
        ("Sanctons on Korea?", "Sanctions on Korea?"),  # capital kept
        # Known to the index, though no dictionary has them: names, acronyms, places.
        ("What does DePetris say about the MTCR and Yeonpyeong?", None),
        # English words the index lacks are not "corrected" into index words.
        ("How many defectors reached the south?", None),
        # Unknown to both, but nothing the index holds is one edit away: left as typed.
        ("Who chairs the Zangger Committee?", None),
        # Contractions, hyphenated and short words are left alone.
        ("Why didn't the UN act on the F-16 sale in Pyng?", None),
    ],
)
def test_only_words_neither_the_index_nor_a_dictionary_knows_are_fixed(
    question: str, expected: str | None
) -> None:
    assert SpellingCorrector(INDEX_WORDS.__contains__).correct(question) == (expected or question)


def test_the_lexical_index_knows_words_in_any_inflection() -> None:
    index = LexicalIndex.build(["a"], ["The parties negotiated the sanctions."])
    assert index.knows("negotiations") and index.knows("Sanction")
    assert not index.knows("article")
    assert not LexicalIndex.build([], []).knows("anything")


def test_a_misspelt_question_is_searched_as_meant(tmp_path: Path) -> None:
    from rag.answering.assistant import open_index
    from rag.answering.chain import ranked_passages
    from rag.index.ingest import ingest
    from tests.conftest import make_settings
    from tests.fakes import HashingEmbeddings, write_corpus
    from tests.test_retrieval_routing import OP_ED, QUESTION, REFERENCE

    write_corpus(tmp_path / "corpus", {"op-ed.md": OP_ED, "reference.md": REFERENCE})
    settings = make_settings(tmp_path, top_k=3, chunk_size=200, chunk_overlap=0)
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    r = open_index(settings, embeddings).retriever(embeddings, settings)
    # Words the tiny index holds, misspelt ("article" it does not hold, so "artcle" would stay).
    typo = QUESTION.replace("diplomats", "diplomatts").replace("Council", "Councel")
    assert typo != QUESTION
    as_meant = [p.chunk_id for p in ranked_passages(r, QUESTION, settings.top_k)]
    assert [p.chunk_id for p in ranked_passages(r, typo, settings.top_k)] == as_meant
    r.settings = settings.model_copy(update={"correct_spelling": False})
    assert [p.chunk_id for p in ranked_passages(r, typo, settings.top_k)] != as_meant
