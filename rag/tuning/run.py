"""``rag tune``: write questions from the corpus, fine-tune the embedding model on them, re-index;
with ``reader=True`` also mine their negatives and train the sentence reader.

Everything is cached beside the index (``$RAG_DATA_DIR/tune``): the questions by sentence, so a
second run after an edit only writes the new ones; the tuned embedding model and the reader each
with a record of the corpus they were trained on, so ``rag tune`` skips what is current. For the
reader a tenth of the questions (whole questions, never pairs of one question on both sides) is
held out and the record says how often the reader, and the answerer's base score, put the target
sentence first among its negatives there.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering.assistant import open_assistant, update_index
from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.llamacpp import shared_model
from rag.answering.llm_files import model_path
from rag.answering.reader import SentenceReader, reader_dir
from rag.config import Settings
from rag.index.documents import discover, load_files
from rag.index.embeddings import TUNED_RECORD, build_embeddings, resolve_model_path, tuned_dir
from rag.index.ingest import UPLOAD_PREFIX
from rag.index.splitting import embed_text, split_document
from rag.tuning.embedder import embedder_pairs, train_embedder
from rag.tuning.pairs import Example, mine
from rag.tuning.questions import (
    MAX_QUESTION_TOKENS,
    SHIPPED_QUESTIONS,
    QuestionCache,
    Target,
    targets,
    write_questions,
)
from rag.tuning.training import grouped, train_reader

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class ReaderReport:
    examples: int
    held_out: int
    reader_top1: float | None
    base_top1: float | None
    trained: bool

    def summary(self) -> str:
        head = f"reader: {self.examples} training pairs"
        if not self.trained:
            return f"{head}, current for this corpus"
        if self.reader_top1 is None or self.base_top1 is None:
            return f"{head}, trained"
        return (
            f"{head}, trained; on {self.held_out} held-out questions it ranks the answering sentence"
            f" first {self.reader_top1:.0%} of the time (the base score: {self.base_top1:.0%})"
        )


@dataclass
class TuneReport:
    questions: int
    embedder_pairs: int
    embedder_trained: bool
    chunks_indexed: int
    reader: ReaderReport | None
    seconds: float
    corpus: str

    def summary(self) -> str:
        if self.embedder_trained:
            lines = [
                f"embedding model fine-tuned on {self.questions} questions ({self.embedder_pairs} pairs)"
                f" and {self.chunks_indexed} chunks re-embedded with it in {self.seconds:.0f} s;"
                " restart a running app to use it"
            ]
        elif self.questions == 0:
            lines = ["no questions written for this corpus yet: nothing tuned (`rag tune` writes them)"]
        else:
            lines = [f"embedding model is current for this corpus ({self.questions} questions)"]
        if self.reader is not None:
            lines.append(self.reader.summary())
        return "\n".join(lines)


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
    epochs: int = 1,
    reader: bool = False,
    reader_epochs: int = 2,
    cached: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> TuneReport:
    """Write up to ``questions`` questions (default ``settings.tune_questions``), fine-tune the
    embedding model on them and re-index; with ``reader`` also train the sentence reader.

    With ``cached`` no question is written and the local model is not needed: training takes the
    questions already written for the corpus's sentences (the cache, and the corpus folder's
    ``SHIPPED_QUESTIONS``); with none, nothing is trained."""
    started = time.perf_counter()
    tell: Progress = progress or (lambda stage, done, total: None)
    files = discover(settings.corpus_dir)
    if settings.uploads_dir.is_dir():
        files += discover(settings.uploads_dir, UPLOAD_PREFIX)
    docs, _ = load_files(files)
    chunks = [
        c for d in docs
        for c in split_document(d, settings.chunk_size, settings.chunk_overlap, settings.embed_context)
    ]
    fingerprint = corpus_fingerprint([c.page_content for c in chunks])
    todo = targets(chunks)[: questions or settings.tune_questions]
    rows = _cached_questions(settings, todo) if cached else None
    wanted = len(rows) if rows is not None else len(todo)
    embedder_old = _current(tuned_dir(settings) / TUNED_RECORD, fingerprint, wanted, settings, force)
    reader_old = _current(reader_dir(settings) / "tune.json", fingerprint, wanted, settings, force)
    if (embedder_old is not None and (not reader or reader_old is not None)) or rows == []:
        return TuneReport(
            questions=int((embedder_old or {}).get("questions", 0)),
            embedder_pairs=int((embedder_old or {}).get("pairs", 0)),
            embedder_trained=False, chunks_indexed=0,
            reader=_old_reader(reader_old) if reader else None,
            seconds=time.perf_counter() - started, corpus=fingerprint,
        )

    if rows is None:
        rows = _written_questions(settings, todo, tell)
    chunks_indexed = 0
    pairs = int((embedder_old or {}).get("pairs", 0))
    if embedder_old is None:
        embedded = {str(c.metadata.get("chunk_id")): embed_text(c, settings.embed_context) for c in chunks}
        training = embedder_pairs(rows, embedded)
        pairs = len(training)
        train_embedder(
            training, resolve_model_path(settings.embedding_model), tuned_dir(settings),
            {"base": settings.embedding_model, "corpus": fingerprint, "questions": len(rows)},
            epochs=epochs, threads=settings.llm_threads,
            progress=lambda step, total, loss: tell("fine-tuning the embedding model", step, total),
        )
        # The tuned model names itself differently in the index, so this re-embeds every chunk.
        indexed = update_index(
            settings, progress=lambda done, total: tell("re-embedding the corpus", done, total)
        )
        chunks_indexed = indexed.chunks_total
    report = TuneReport(
        questions=len(rows), embedder_pairs=pairs, embedder_trained=embedder_old is None,
        chunks_indexed=chunks_indexed, reader=None, seconds=0.0, corpus=fingerprint,
    )
    if reader:
        report.reader = (
            _old_reader(reader_old) if reader_old is not None
            else _train_reader(settings, rows, chunks, fingerprint, reader_epochs, tell)
        )
    report.seconds = time.perf_counter() - started
    return report


def _current(
    record_path: Path, fingerprint: str, wanted: int, settings: Settings, force: bool
) -> dict[str, Any] | None:
    """The record at ``record_path`` when it is of this corpus, with about the questions asked
    for, from the configured base model; None when training is due."""
    if force:
        return None
    try:
        old = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("corpus") != fingerprint:
        return None
    if old.get("questions", 0) < wanted * 0.9:
        return None
    if old.get("base", settings.embedding_model) != settings.embedding_model:
        return None
    return old


def _old_reader(record: dict[str, Any] | None) -> ReaderReport | None:
    if record is None:
        return None
    return ReaderReport(
        examples=int(record.get("examples", 0)), held_out=int(record.get("held_out", 0)),
        reader_top1=record.get("reader_top1"), base_top1=record.get("base_top1"), trained=False,
    )


def _question_cache(settings: Settings) -> QuestionCache:
    return QuestionCache(
        settings.tune_dir / "questions.jsonl", model=model_path(settings).name,
        shipped=settings.corpus_dir / SHIPPED_QUESTIONS,
    )


def _usable(pairs: Iterable[tuple[Target, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """The rows that hold a question, each with its sentence's chunk as the corpus is chunked
    now (a row written before a re-chunking names the chunk of that time)."""
    return [{**row, "chunk_id": t.chunk_id} for t, row in pairs if row and row.get("question")]


def _cached_questions(settings: Settings, todo: list[Target]) -> list[dict[str, Any]]:
    cache = _question_cache(settings)
    return _usable((t, cache.get(t)) for t in todo)


def _written_questions(settings: Settings, todo: list[Target], tell: Progress) -> list[dict[str, Any]]:
    model = shared_model(settings)
    cache = _question_cache(settings)
    rows = write_questions(
        todo, cache, lambda messages: model.chat(messages, max_tokens=MAX_QUESTION_TOKENS),
        progress=lambda done, total: tell("writing questions", done, total),
    )
    return _usable(zip(todo, rows, strict=True))


def _train_reader(
    settings: Settings, rows: Sequence[dict[str, Any]], chunks: Sequence[Any], fingerprint: str,
    epochs: int, tell: Progress,
) -> ReaderReport:
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
    out = reader_dir(settings)
    train_reader(
        train, resolve_model_path(settings.embedding_model), out, epochs=epochs,
        threads=settings.llm_threads,
        progress=lambda step, total, loss: tell("training the reader", step, total),
    )
    scorer = SentenceReader(out, threads=settings.llm_threads)
    reader_hits = base_hits = 0
    for n, g in enumerate(held, start=1):
        texts = [e.text for e in g]
        reader_hits += int(np.argmax(scorer.score(g[0].question, texts)) == 0)
        base_hits += int(np.argmax(_base_scores(base, g[0].question, texts)) == 0)
        tell("checking held-out questions", n, len(held))
    report = ReaderReport(
        examples=len(train), held_out=len(held),
        reader_top1=reader_hits / len(held) if held else None,
        base_top1=base_hits / len(held) if held else None,
        trained=True,
    )
    fields = asdict(report)
    fields.pop("trained")
    fields.update(questions=len(rows), corpus=fingerprint, base=settings.embedding_model)
    (out / "tune.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    return report


def _base_scores(base: ExtractiveAnswerer, question: str, texts: Sequence[str]) -> np.ndarray:
    from rag.answering.extractive import Candidate

    found = [Candidate(1, t, t, None) for t in texts]
    return base.scores(question, found, 1)
