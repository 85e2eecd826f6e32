"""The real Qwen2.5-Coder 0.5B model through llama-cpp-python, over the bundled corpus.

`make test` installs both first (`make test-llm`: llama-cpp-python built for this CPU, and the
0.5B GGUF in .rag/models, verified) and sets RAG_REQUIRE_EXTRAS=1, under which missing either is a
failure: CI must run these. Elsewhere they are skipped, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answering import Answer, Delta, prompts
from rag.answering.llm_files import MODELS, ModelVerificationError, checked_model_path, verify_file
from rag.config import Settings
from tests.conftest import installed, require_extra

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the local LLM on CPU

REPO = Path(__file__).resolve().parent.parent
SPEC = MODELS["0.5b"]
MODEL = REPO / ".rag" / "models" / SPEC.filename
COASTLINE = "How long is North Korea's coastline?"


@pytest.fixture(scope="module")
def model_file() -> Path:
    require_extra(installed("llama_cpp"), "llama-cpp-python (the llm extra) is missing: run `make test-llm`")
    require_extra(MODEL.is_file(), f"{MODEL} is missing: run `make test-llm`")
    return MODEL


@pytest.fixture(scope="module")
def llm_settings(real_index: Settings, model_file: Path) -> Settings:
    return real_index.model_copy(
        update={
            "answerer": "llamacpp",
            "llm_role": "writer",  # most tests here are about generated answers
            "llm_model": "0.5b",
            "llm_model_path": model_file,
            "llm_max_tokens": 128,
        }
    )


@pytest.fixture(scope="module")
def assistant(llm_settings: Settings, real_embeddings: object):  # type: ignore[no-untyped-def]
    from rag.answering import open_assistant

    return open_assistant(llm_settings, embeddings=real_embeddings)  # type: ignore[arg-type]


def test_the_installed_file_has_the_official_hash(model_file: Path) -> None:
    verify_file(model_file, SPEC, use_stamp=False)  # a full re-hash, no stamp trusted


def test_a_truncated_copy_is_rejected_by_size(tmp_path: Path, model_file: Path) -> None:
    head = tmp_path / SPEC.filename
    with model_file.open("rb") as src:
        head.write_bytes(src.read(1 << 20))
    with pytest.raises(ModelVerificationError, match="1,048,576 bytes"):
        verify_file(head, SPEC)


def test_a_same_size_forgery_is_rejected_by_hash_and_never_loaded(tmp_path: Path, model_file: Path) -> None:
    # Same name and size as the official file (sparse, so no disk is spent), other bytes.
    fake = tmp_path / "models" / SPEC.filename
    fake.parent.mkdir()
    with fake.open("wb") as fh:
        with model_file.open("rb") as src:
            fh.write(src.read(1 << 20))  # even a genuine GGUF header does not help
        fh.truncate(SPEC.size)
    assert fake.stat().st_size == SPEC.size
    with pytest.raises(ModelVerificationError, match="SHA-256"):
        verify_file(fake, SPEC)
    s = Settings(_env_file=None, data_dir=tmp_path, llm_model="0.5b")  # type: ignore[call-arg]
    from rag.answering.llamacpp import build_llamacpp_answerer

    with pytest.raises(ModelVerificationError):
        build_llamacpp_answerer(s)
    with pytest.raises(ModelVerificationError):
        checked_model_path(s)


def test_an_answer_streams_with_valid_supported_citations(assistant) -> None:  # type: ignore[no-untyped-def]
    events = list(assistant.stream(COASTLINE))
    deltas = [e.text for e in events if isinstance(e, Delta)]
    answer = events[-1]
    assert isinstance(answer, Answer)
    assert answer.mode == "llamacpp", answer.note
    assert len(deltas) > 3  # token by token, not one block
    assert not answer.refused
    assert "2,495" in answer.answer
    assert answer.citations
    for c in answer.citations:
        assert 1 <= c.n <= len(answer.retrieved)
        assert c.passage is answer.retrieved[c.n - 1]
        assert f"[{c.n}]" in answer.answer
    assert any(s.supported for s in answer.sentences)
    supported_sources = {
        answer.retrieved[n - 1].source for s in answer.sentences if s.supported for n in s.citations
    }
    assert any("north-korea" in src for src in supported_sources), supported_sources


def test_a_question_the_corpus_cannot_answer_gets_the_refusal(
    llm_settings: Settings, real_embeddings
) -> None:  # type: ignore[no-untyped-def]
    # Ask the model directly over on-topic passages that lack the answer, so the refusal comes
    # from the model and not from the retrieval threshold.
    from rag.answering.llamacpp import build_llamacpp_answerer
    from rag.retrieval import Passage

    passages = [
        Passage(
            "p1",
            "Coastline: 2,495 km. Maritime claims: territorial sea: 12 nm; exclusive economic zone: 200 nm.",
            {
                "source": "cia-world-factbook-2016-north-korea.md",
                "title": "Factbook: Korea, North",
                "section": "Geography",
            },
            0.6,
        ),
        Passage(
            "p2",
            "North Korea's population was estimated at 25,115,311 in July 2016.",
            {
                "source": "cia-world-factbook-2016-north-korea.md",
                "title": "Factbook: Korea, North",
                "section": "People and Society > Population",
            },
            0.5,
        ),
    ]
    text = "".join(
        build_llamacpp_answerer(llm_settings).stream(
            "What is the name of North Korea's national anthem?", passages, []
        )
    )
    assert prompts.refusal().rstrip(".").lower() in text.lower(), text


def test_the_judge_flags_a_planted_false_sentence(llm_settings: Settings) -> None:
    from rag.answering.llamacpp import llamacpp_judge, llamacpp_verifier
    from rag.retrieval import Passage

    text = (
        "Coastline: 2,495 km. North Korea's coastline borders the Korea Bay and the Sea of Japan."
        " Its highest point is Paektu-san at 2,744 m."
    )
    passage = Passage(
        "p", text, {"source": "f.md", "title": "Factbook: Korea, North", "section": "Geography"}, 0.8
    )
    verify = llamacpp_verifier(llm_settings)
    assert verify("North Korea has a coastline of 9,000 kilometres [1].", [passage]) is False
    # The 0.5B judge errs on the strict side (it rejects some true claims, see docs/llm.md),
    # so only its verdict on false claims is asserted here.
    judge = llamacpp_judge(llm_settings)
    assert judge("The highest point of North Korea is Mount Halla.", [passage]) is False


def test_the_model_is_loaded_once_per_process(llm_settings: Settings) -> None:
    from rag.answering.llamacpp import shared_model

    assert shared_model(llm_settings) is shared_model(llm_settings.model_copy(update={"llm_max_tokens": 64}))


def test_yes_no_margin_reads_the_judgement_and_reuses_the_cached_prefix(model_file: Path) -> None:
    from rag.answering.judged import yes_no_margin
    from rag.answering.llamacpp import LocalModel, load_llama

    model = LocalModel(lambda: load_llama(model_file, threads=2, context=1024))
    system = "Answer yes or no."
    yes = yes_no_margin(model, system, "Is Paris the capital of France? Answer yes or no.")
    held = model.llm.n_tokens
    no = yes_no_margin(model, system, "Is Paris the capital of Japan? Answer yes or no.")
    # The 0.5B model leans to "no" on both (its judgements are near chance; the 1.5B gives
    # +3.9 and -4.0 here), but it still finds the true statement the likelier "yes".
    assert yes > no
    # Asked again after another question, the same judgement comes out the same.
    again = yes_no_margin(model, system, "Is Paris the capital of France? Answer yes or no.")
    assert abs(again - yes) < 1e-6 and held > 0


def test_the_judge_role_shows_only_quotes_or_refuses(llm_settings: Settings, real_embeddings: object) -> None:
    from rag.answering import open_assistant

    judged = open_assistant(llm_settings.model_copy(update={"llm_role": "judge"}), embeddings=real_embeddings)  # type: ignore[arg-type]
    answer = judged.ask(COASTLINE)
    assert answer.mode == "llamacpp", answer.note
    if answer.refused:
        assert answer.answer == prompts.refusal() and not answer.citations
    else:
        assert "2,495 km" in answer.answer
        assert answer.sentences and all(s.supported for s in answer.sentences)
