"""Questions written by the local LLM from the corpus's own sentences, cached beside the index.

Each question is asked of one target sentence, shown inside its passage so the model can name
the subject. Sentences are taken a few per chunk, chunks in a seeded shuffled order, so the first
N questions spread over the whole collection and a longer run only adds to them. The system
prompt and the passage come first in every prompt: llama.cpp reuses that cached prefix for the
chunk's next sentence, and only the target sentence and the question cost tokens.

The cache is a JSON-lines file keyed by the sentence's hash, the model and the prompt's hash: an
interrupted run resumes where it stopped, and an edited document only costs its new sentences.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from rag.answering import prompts
from rag.text import content_tokens, split_sentences

SENTENCES_PER_CHUNK = 3
MIN_CONTENT_WORDS = 6
# A corpus folder may carry the questions the local model wrote from it (rag tune's cache, in
# this file name, hidden so it is not indexed): `rag tune --cached` then needs no model.
SHIPPED_QUESTIONS = ".tune-questions.jsonl"
MAX_SENTENCE_CHARS = 400
MAX_QUESTION_TOKENS = 48


@dataclass(frozen=True)
class Target:
    """A sentence to write a question for, with the chunk it was taken from."""

    chunk_id: str
    source: str
    where: str
    passage: str
    sentence: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.source}\n{self.sentence}".encode()).hexdigest()[:20]


def targets(chunks: Iterable[Document], *, seed: int = 7) -> list[Target]:
    """The sentences worth a question, a few per chunk, in a seeded order over the chunks."""
    by_chunk: list[list[Target]] = []
    seen: set[str] = set()
    for chunk in chunks:
        meta = chunk.metadata
        if meta.get("section") == "Document":  # the generated title card, not the author's words
            continue
        where = " > ".join(str(x) for x in (meta.get("title"), meta.get("section")) if x)
        picks: list[Target] = []
        for sentence in split_sentences(chunk.page_content):
            if len(sentence) > MAX_SENTENCE_CHARS or len(content_tokens(sentence)) < MIN_CONTENT_WORDS:
                continue
            if sentence in seen:  # overlapping chunks repeat their edges
                continue
            seen.add(sentence)
            picks.append(Target(str(meta.get("chunk_id", "")), str(meta.get("source", "")), where,
                                chunk.page_content, sentence))
        if picks:
            by_chunk.append(picks)
    rng = random.Random(seed)
    rng.shuffle(by_chunk)
    ordered: list[Target] = []
    for picks in by_chunk:
        if len(picks) > SENTENCES_PER_CHUNK:
            picks = sorted(rng.sample(picks, SENTENCES_PER_CHUNK), key=picks.index)
        ordered.extend(picks)
    return ordered


def prompt_version() -> str:
    return hashlib.sha256(prompts.load("tune_question_system").encode()).hexdigest()[:12]


def question_messages(target: Target) -> list[dict[str, str]]:
    user = (
        f"Document: {target.where}\n\nPassage:\n{target.passage}\n\n"
        f"Target sentence: \"{target.sentence}\""
    )
    return [
        {"role": "system", "content": prompts.load("tune_question_system")},
        {"role": "user", "content": user},
    ]


def clean_question(reply: str) -> str | None:
    """The first line of the reply if it reads as a question, else None.

    >>> clean_question('Question: "What year did the talks end?"\\nThe answer is 2009.')
    'What year did the talks end?'
    >>> clean_question("The passage does not say.") is None
    True
    """
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    text = lines[0]
    if text.lower().startswith("question:"):
        text = text[len("question:"):].strip()
    text = text.strip('"').strip()
    if not text.endswith("?") or len(content_tokens(text)) < 2:
        return None
    return text


class QuestionCache:
    """The JSON-lines file of written questions for one model and prompt."""

    def __init__(self, path: Path, *, model: str, shipped: Path | None = None) -> None:
        """``path`` is read and appended to; ``shipped`` (a corpus folder's own file of written
        questions, ``SHIPPED_QUESTIONS``) is only read, and ``path`` wins where both hold one."""
        self.path = path
        self.model = model
        self.version = prompt_version()
        self._done: dict[str, dict[str, Any]] = {}
        for source in (shipped, path):
            if source is None or not source.is_file():
                continue
            for line in source.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a killed run
                    continue
                if isinstance(row, dict) and row.get("model") == model and row.get("prompt") == self.version:
                    self._done[str(row.get("key"))] = row

    def get(self, target: Target) -> dict[str, Any] | None:
        return self._done.get(target.key)

    def add(self, target: Target, question: str | None) -> dict[str, Any]:
        row = {
            "key": target.key, "model": self.model, "prompt": self.version,
            "chunk_id": target.chunk_id, "source": target.source,
            "sentence": target.sentence, "question": question,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._done[target.key] = row
        return row


def write_questions(
    todo: list[Target],
    cache: QuestionCache,
    ask: Callable[[list[dict[str, str]]], str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield a cached or newly written row for each target (``question`` is None when the
    model's reply was not a usable question)."""
    for n, target in enumerate(todo, start=1):
        row = cache.get(target)
        if row is None:
            row = cache.add(target, clean_question(ask(question_messages(target))))
        if progress is not None:
            progress(n, len(todo))
        yield row
