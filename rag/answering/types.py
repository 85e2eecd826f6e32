"""The answering layer's data: what goes into an answer and what comes out of it.

A conversation turn is a plain dict (``Turn``); an answer streams as ``Delta`` pieces of text and
ends with one ``Answer``, whose ``to_json()`` is the JSON of ``rag ask --json`` and ``POST /api/ask``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rag.retrieval import Passage

# {"role": "user" | "assistant", "content": ..., optional "sources": [file names cited]}
Turn = dict[str, Any]


class QuestionError(ValueError):
    """The question cannot be answered as asked (empty, too long); the message says why."""


class AnswererError(Exception):
    """The answer backend failed (down, timed out, refused); the message is shown to users."""


class Answerer(Protocol):
    name: str

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> Iterator[str]:
        """Yield the answer in pieces; ``[n]`` refers to ``passages[n - 1]``."""
        ...


@dataclass
class Delta:
    """A piece of answer text, as it streams."""

    text: str


@dataclass
class Sentence:
    """One sentence of an answer, the passage numbers it cites, and whether they support it."""

    text: str
    citations: list[int]
    supported: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": self.citations, "supported": self.supported}


@dataclass
class Citation:
    """Passage ``n`` as an answer cites it, with the sentence of it that backs the answer."""

    n: int
    passage: Passage
    quote: str

    def as_dict(self) -> dict[str, Any]:
        p = self.passage
        return {
            "n": self.n,
            "source": p.source,
            "title": p.title,
            # A reader tells an opinion piece from a reference work by its byline.
            "author": p.author,
            "publication": p.publication,
            "section": p.section,
            "url": p.url,
            "chunk_id": p.chunk_id,
            "text": p.text,
            "quote": self.quote,
            "score": round(p.similarity, 4),
        }


@dataclass
class Answer:
    """One answered (or refused) question; ``[n]`` in ``answer`` is ``retrieved[n - 1]``."""

    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    retrieved: list[Passage]
    mode: str
    standalone_question: str = ""
    sentences: list[Sentence] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.as_dict() for c in self.citations],
            "retrieved": [
                {
                    "source": p.source,
                    "chunk_id": p.chunk_id,
                    "score": round(p.similarity, 4),
                    "text": p.text,
                    "title": p.title,
                    "section": p.section,
                }
                for p in self.retrieved
            ],
            "mode": self.mode,
            "standalone_question": self.standalone_question,
            "sentences": [s.as_dict() for s in self.sentences],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "note": self.note,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The answer as ``rag ask --json`` prints it and ``POST /api/ask`` returns it (with
        ``indent=None``, one line: a server-sent event's data)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)
