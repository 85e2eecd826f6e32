"""``rag tune``: write questions from the corpus, mine their negatives, train the reader.

Everything is cached beside the index (``$RAG_DATA_DIR/tune``): the questions by sentence, so a
second run after an edit only writes the new ones; the reader with a record of the corpus it was
trained on, so ``rag tune`` skips training when that corpus has not changed. A tenth of the
questions (whole questions, never pairs of one question on both sides) is held out and the
record says how often the reader, and the answerer's base score, put the target sentence first
among its negatives there.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rag.answering.assistant import open_assistant
from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.llamacpp import shared_model
from rag.answering.reader import SentenceReader, reader_dir
from rag.config import Settings
from rag.index.documents import discover, load_files
from rag.index.embeddings import build_embeddings, resolve_model_path
from rag.index.ingest import UPLOAD_PREFIX
from rag.index.splitting import split_document
from rag.tuning.pairs import Example, mine
from rag.tuning.questions import MAX_QUESTION_TOKENS, QuestionCache, targets, write_questions
from rag.tuning.training import grouped, train_reader

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class TuneReport:
    questions: int
    examples: int
    held_out: int
    reader_top1: float | None
    base_top1: float | None
    trained: bool
    seconds: float
    corpus: str

    def summary(self) -> str:
        head = f"{self.questions} questions, {self.examples} training pairs"
        if not self.trained:
            return f"reader is current for this corpus ({head})"
        if self.reader_top1 is None or self.base_top1 is None:
            return f"reader trained on {head} in {self.seconds:.0f} s"
        return (
            f"reader trained on {head} in {self.seconds:.0f} s; on {self.held_out} held-out questions "
            f"it ranks the answering sentence first {self.reader_top1:.0%} of the time "
            f"(the base score: {self.base_top1:.0%})"
        )


def corpus_fingerprint(chunks_text: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in chunks_text:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def tune(
    settings: Settings,
    *,
    questions: int | None = None,
    epochs: int = 2,
    force: bool = False,
    progress: Progress | None = None,
) -> TuneReport:
    """Write up to ``questions`` questions (default ``settings.tune_questions``), mine, train."""
    started = time.perf_counter()
    tell: Progress = progress or (lambda stage, done, total: None)
    files = discover(settings.corpus_dir)
    if settings.uploads_dir.is_dir():
        files += discover(settings.uploads_dir, UPLOAD_PREFIX)
    docs, _ = load_files(files)
    chunks = [c for d in docs for c in split_document(d, settings.chunk_size, settings.chunk_overlap)]
    fingerprint = corpus_fingerprint([c.page_content for c in chunks])
    todo = targets(chunks)[: questions or settings.tune_questions]
    out = reader_dir(settings)
    record = out / "tune.json"
    if not force and record.exists():
        old = json.loads(record.read_text(encoding="utf-8"))
        if old.get("corpus") == fingerprint and old.get("questions", 0) >= len(todo) * 0.9:
            return TuneReport(**{**old, "trained": False, "seconds": time.perf_counter() - started})

    model = shared_model(settings)
    cache = QuestionCache(settings.data_dir / "tune" / "questions.jsonl", model=model.name)
    rows = list(
        write_questions(
            todo, cache, lambda messages: model.chat(messages, max_tokens=MAX_QUESTION_TOKENS),
            progress=lambda done, total: tell("writing questions", done, total),
        )
    )
    rows = [r for r in rows if r.get("question")]
    embeddings = build_embeddings(settings)
    assistant = open_assistant(settings, embeddings=embeddings)
    base = ExtractiveAnswerer(embeddings)
    sections = {str(c.metadata.get("chunk_id")): str(c.metadata.get("section", "")) for c in chunks}
    examples: list[Example] = []
    for n, row in enumerate(rows, start=1):
        examples.extend(mine([row], lambda q: assistant.retrieve(q).shown, base.scores, sections, seed=n))
        tell("finding negatives", n, len(rows))
    groups = grouped(examples)
    random.Random(0).shuffle(groups)
    held = groups[: len(groups) // 10]
    train = [e for g in groups[len(held):] for e in g]
    train_reader(
        train, resolve_model_path(settings.embedding_model), out, epochs=epochs,
        threads=settings.llm_threads,
        progress=lambda step, total, loss: tell("training the reader", step, total),
    )
    reader = SentenceReader(out, threads=settings.llm_threads)
    reader_hits = base_hits = 0
    for n, g in enumerate(held, start=1):
        texts = [e.text for e in g]
        reader_hits += int(np.argmax(reader.score(g[0].question, texts)) == 0)
        base_hits += int(np.argmax(_base_scores(base, g[0].question, texts)) == 0)
        tell("checking held-out questions", n, len(held))
    report = TuneReport(
        questions=len(rows), examples=len(train), held_out=len(held),
        reader_top1=reader_hits / len(held) if held else None,
        base_top1=base_hits / len(held) if held else None,
        trained=True, seconds=time.perf_counter() - started, corpus=fingerprint,
    )
    fields = asdict(report)
    fields.pop("trained")
    fields.pop("seconds")
    record.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    return report


def _base_scores(base: ExtractiveAnswerer, question: str, texts: Sequence[str]) -> np.ndarray:
    from rag.answering.extractive import Candidate

    found = [Candidate(1, t, t, None) for t in texts]
    return base.scores(question, found, 1)
