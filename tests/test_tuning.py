"""The reader's training data and its use by the extractive answerer (fakes; no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from rag.answering.extractive import ExtractiveAnswerer
from rag.retrieval import Passage
from rag.tuning.pairs import Example, mine
from rag.tuning.questions import QuestionCache, Target, targets, write_questions
from rag.tuning.training import grouped
from tests.fakes import HashingEmbeddings

LONG = "The Agreed Framework of 1994 froze the Yongbyon reactor in exchange for two light water reactors."


def chunk(text: str, chunk_id: str, section: str = "History") -> Document:
    return Document(text, metadata={"source": "a.md", "title": "A", "section": section, "chunk_id": chunk_id})


def test_targets_skip_cards_short_and_repeated_sentences() -> None:
    chunks = [
        chunk("A, a document. " + LONG, "card", section="Document"),
        chunk("Too short here. " + LONG, "c1"),
        chunk(LONG + " Construction of both reactors stopped in 2003 after the framework broke down.", "c2"),
    ]
    found = targets(chunks)
    sentences = [t.sentence for t in found]
    assert LONG in sentences and sentences.count(LONG) == 1  # the overlap repeats it: asked once
    assert "Too short here." not in sentences
    assert all(t.chunk_id != "card" for t in found)


def test_targets_take_a_few_sentences_per_chunk_in_a_seeded_order() -> None:
    text = " ".join(f"Sentence {i} names the fuel rods stored at Yongbyon site {i}." for i in range(8))
    chunks = [chunk(text, f"c{i}") for i in range(1)] + [chunk(LONG, "c9")]
    first, again = targets(chunks, seed=3), targets(chunks, seed=3)
    assert first == again
    assert sum(1 for t in first if t.chunk_id == "c0") == 3


def test_question_cache_resumes_and_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    more = " Construction of both reactors stopped in 2003 after the framework broke down."
    todo = targets([chunk(LONG + more, "c")])
    asked: list[str] = []

    def ask(messages: list[dict[str, str]]) -> str:
        asked.append(messages[-1]["content"])
        return "When was the Yongbyon reactor frozen?"

    rows = list(write_questions(todo[:1], QuestionCache(path, model="m"), ask))
    assert [r["question"] for r in rows] == ["When was the Yongbyon reactor frozen?"]
    with path.open("a") as f:
        f.write('{"key": "cut sho')  # a run killed mid-line
    rows = list(write_questions(todo, QuestionCache(path, model="m"), ask))
    assert len(asked) == len(todo)  # the first target was not asked again
    assert all(r["question"] for r in rows)
    # another model's questions are not reused
    list(write_questions(todo[:1], QuestionCache(path, model="other"), ask))
    assert len(asked) == len(todo) + 1


def test_a_reply_that_is_not_a_question_is_kept_as_none(tmp_path: Path) -> None:
    todo = targets([chunk(LONG, "c")])
    rows = list(write_questions(todo, QuestionCache(tmp_path / "q.jsonl", model="m"), lambda m: "I cannot."))
    assert rows[0]["question"] is None
    assert json.loads((tmp_path / "q.jsonl").read_text())["question"] is None


def passage(text: str, n: int) -> Passage:
    return Passage(f"p{n}", text, {"source": "a.md", "title": "A", "section": "History"}, 0.5)


def test_mine_labels_the_target_and_leaves_out_restatements() -> None:
    target = "Construction stopped in 2003 after the framework broke down."
    restated = "In 2003 construction stopped when the framework broke down completely."
    other = "The reactors were to be built by a consortium led by South Korea."
    easy = "Japan contributed one billion dollars to the project over ten years."
    passages = [passage(f"{target} {restated}", 1), passage(f"{other} {easy}", 2)]
    row = {"key": "k1", "question": "When did construction stop?", "sentence": target, "chunk_id": "c1"}
    base = ExtractiveAnswerer(HashingEmbeddings())
    rows = [row, {**row, "key": "k2", "question": None}]
    examples = mine(rows, lambda q: passages, base.scores, {"c1": "History"})
    assert examples[0] == Example("When did construction stop?", f"History: {target}", 1.0, "k1")
    negatives = [e.text for e in examples[1:]]
    assert all(e.label == 0.0 and e.group == "k1" for e in examples[1:])
    assert f"History: {other}" in negatives and f"History: {easy}" in negatives
    assert not any(restated in t or target in t for t in negatives)
    assert len(grouped(examples)) == 1


class FakeReader:
    """Probability 0.9 for sentences holding ``answer``, else ``rest``."""

    def __init__(self, answer: str, rest: float = 0.05) -> None:
        self.answer = answer
        self.rest = rest

    def score(self, question: str, texts: list[str]) -> np.ndarray:
        return np.array([0.9 if self.answer in t else self.rest for t in texts])


PASSAGES = [
    passage("The reactor project was halted in 2003. Two reactors were planned at Kumho.", 1),
    passage("The reactor buildings were about 50 percent complete when the project stopped.", 2),
]


def test_the_reader_moves_the_answer_first_and_refuses_when_nothing_answers() -> None:
    emb = HashingEmbeddings()
    question = "How complete were the reactor buildings when the project was halted?"
    plain = ExtractiveAnswerer(emb, max_sentences=1)
    read = ExtractiveAnswerer(
        emb, max_sentences=1, reader=FakeReader("50 percent"), reader_weight=1.0, reader_min=0.5  # type: ignore[arg-type]
    )
    assert [s for _, s in read.select(question, PASSAGES)] == [
        "The reactor buildings were about 50 percent complete when the project stopped."
    ]
    assert plain.select(question, PASSAGES)  # the base answers something either way
    unsure = ExtractiveAnswerer(
        emb, reader=FakeReader("nowhere"), reader_weight=1.0, reader_min=0.5  # type: ignore[arg-type]
    )
    assert unsure.select(question, PASSAGES) == []
    assert "".join(unsure.stream(question, PASSAGES, [])).startswith("I could not find")


def test_the_reader_is_used_only_when_asked_for_and_trained(tmp_path: Path) -> None:
    from rag.answering.reader import tuned_reader
    from rag.config import Settings

    settings = Settings(data_dir=tmp_path, reader="on")
    assert tuned_reader(settings) is None
    (tmp_path / "tune" / "reader").mkdir(parents=True)
    (tmp_path / "tune" / "reader" / "tune.json").write_text("{}")
    assert tuned_reader(settings) is not None
    assert tuned_reader(Settings(data_dir=tmp_path)) is None  # off unless asked for


def test_target_key_depends_on_source_and_sentence() -> None:
    a = Target("c", "a.md", "A", "p", "s")
    assert a.key == Target("x", "a.md", "B", "q", "s").key != Target("c", "b.md", "A", "p", "s").key


@pytest.mark.slow
def test_a_reader_trains_from_the_bundled_minilm_and_scores_what_it_was_taught(tmp_path: Path) -> None:
    from rag.answering.reader import SentenceReader
    from rag.index.embeddings import BUNDLED_MODEL, resolve_model_path
    from rag.tuning.training import train_reader

    answer = "History: The project was halted in 2003 when the framework collapsed."
    other = "History: Japan paid for a share of the reactors over ten years."
    examples = []
    for i in range(12):
        question = f"When was the reactor project halted? ({i})"
        examples += [Example(question, answer, 1.0, f"g{i}"), Example(question, other, 0.0, f"g{i}")]
    out = train_reader(examples, resolve_model_path(BUNDLED_MODEL), tmp_path / "reader", epochs=3, threads=2)
    probs = SentenceReader(out, threads=2).score("When was the reactor project halted?", [answer, other])
    assert probs.shape == (2,) and 0.0 <= probs.min() <= probs.max() <= 1.0
    assert probs[0] > probs[1]


def test_embedder_pairs_take_the_chunk_as_embedded_and_the_sentence() -> None:
    from rag.tuning.embedder import embedder_pairs

    rows = [
        {"question": "When was KEDO founded?", "sentence": "KEDO was founded in 1995.", "chunk_id": "c1"},
        {"question": None, "sentence": "An unwritten one.", "chunk_id": "c1"},
        {"question": "Who paid?", "sentence": "Japan paid.", "chunk_id": "gone"},
    ]
    pairs = embedder_pairs(rows, {"c1": "KEDO > History\nKEDO was founded in 1995 by three states."})
    assert pairs == [
        ("When was KEDO founded?", "KEDO > History\nKEDO was founded in 1995 by three states."),
        ("When was KEDO founded?", "KEDO was founded in 1995."),
        ("Who paid?", "Japan paid."),
    ]


@pytest.mark.slow
def test_the_embedder_fine_tunes_towards_its_pairs_and_is_then_used(tmp_path: Path) -> None:
    import json

    from sentence_transformers import SentenceTransformer

    from rag.config import Settings
    from rag.index.embeddings import (
        BUNDLED_MODEL,
        embedding_name,
        embedding_path,
        resolve_model_path,
        tuned_dir,
    )
    from rag.tuning.embedder import train_embedder

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    notes = [
        "The Korean Peninsula Energy Development Organization built two reactors at Kumho.",
        "North Korea's coastline is 2,495 km long.",
        "The Agreed Framework was signed in Geneva in October 1994.",
        "China took 75.8% of North Korea's exports in 2015.",
        "The Six-Party Talks began in Beijing in August 2003.",
        "The Kaesong Industrial Region opened in 2004.",
    ]
    questions = [f"Which note is number {i}?" for i in range(len(notes))]  # nothing in common
    pairs = list(zip(questions, notes, strict=True))

    def margin(model: SentenceTransformer) -> float:
        """How far each question's own note is above the others, on average (the loss's aim)."""
        q, n = (model.encode(texts, normalize_embeddings=True) for texts in (questions, notes))
        sims = q @ n.T
        own = sims.diagonal().mean()
        return float(own - (sims.sum() - sims.diagonal().sum()) / (sims.size - len(notes)))

    base = resolve_model_path(BUNDLED_MODEL)
    before = margin(SentenceTransformer(str(base), device="cpu"))
    record = train_embedder(
        pairs * 5, base, tuned_dir(settings), {"base": BUNDLED_MODEL, "corpus": "x", "questions": 6},
        epochs=3, threads=2, learning_rate=1e-4,
    )
    saved = json.loads((tuned_dir(settings) / "tuned.json").read_text())
    assert saved == record and len(record["weights"]) == 12 and record["pairs"] == 30
    assert not list(tmp_path.glob("tune/.embedder-*"))  # the temporary folder is gone
    assert embedding_path(settings) == tuned_dir(settings)
    assert embedding_name(settings) == f"{BUNDLED_MODEL}+tuned-{record['weights']}"
    after = margin(SentenceTransformer(str(embedding_path(settings)), device="cpu"))
    assert after > before + 0.05, (before, after)


def test_a_shipped_question_file_is_read_and_the_cache_wins(tmp_path: Path) -> None:
    todo = targets([chunk(LONG, "c")])
    shipped = tmp_path / "corpus" / ".tune-questions.jsonl"
    shipped.parent.mkdir()
    first = QuestionCache(tmp_path / "scratch.jsonl", model="m").add(todo[0], "What was frozen at Yongbyon?")
    shipped.write_text(json.dumps(first) + "\n" + "not json\n")
    cache = QuestionCache(tmp_path / "q.jsonl", model="m", shipped=shipped)
    assert cache.get(todo[0])["question"] == "What was frozen at Yongbyon?"  # type: ignore[index]
    cache.add(todo[0], "When was the reactor frozen?")
    again = QuestionCache(tmp_path / "q.jsonl", model="m", shipped=shipped)
    assert again.get(todo[0])["question"] == "When was the reactor frozen?"  # type: ignore[index]
    assert shipped.read_text().count("\n") == 2  # the shipped file is never written to
    assert QuestionCache(tmp_path / "q.jsonl", model="other", shipped=shipped).get(todo[0]) is None


def test_tune_cached_trains_on_written_questions_without_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.tuning.run as run
    from rag.index.documents import discover, load_files
    from rag.index.splitting import split_document
    from tests.conftest import make_settings
    from tests.fakes import write_corpus

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)  # no local model installed: it must not be needed
    trained: list[list[tuple[str, str]]] = []

    def fake_train(pairs, base, out, record, **kw):  # type: ignore[no-untyped-def]
        trained.append(list(pairs))
        out.mkdir(parents=True, exist_ok=True)
        (out / "tuned.json").write_text(json.dumps({**record, "weights": "w1", "pairs": len(pairs)}))
        return record

    class Indexed:
        chunks_total = 7

    monkeypatch.setattr(run, "train_embedder", fake_train)
    monkeypatch.setattr(run, "update_index", lambda settings, progress=None: Indexed())
    report = run.tune(settings, cached=True)
    assert not report.embedder_trained and report.questions == 0 and trained == []
    assert "nothing tuned" in report.summary()

    docs, _ = load_files(discover(settings.corpus_dir))
    chunks = [c for d in docs for c in split_document(d, settings.chunk_size, settings.chunk_overlap)]
    todo = targets(chunks)
    assert todo
    writer = QuestionCache(tmp_path / "written.jsonl", model="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    rows = [writer.add(t, f"What does sentence {n} say?") for n, t in enumerate(todo)]
    rows[0]["chunk_id"] = "a-chunk-of-an-older-chunking"  # the target's chunk of today is used
    (settings.corpus_dir / ".tune-questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    report = run.tune(settings, cached=True)
    assert report.embedder_trained and report.questions == len(todo) and report.chunks_indexed == 7
    pairs = trained[0]
    assert len(pairs) == 2 * len(todo)  # (question, chunk as embedded) and (question, sentence)
    first_chunk = next(c for c in chunks if c.metadata["chunk_id"] == todo[0].chunk_id)
    assert (rows[0]["question"], todo[0].sentence) in pairs
    assert any(q == rows[0]["question"] and first_chunk.page_content in p for q, p in pairs)
    assert run.tune(settings, cached=True).embedder_trained is False  # current: not trained again
    assert len(trained) == 1
