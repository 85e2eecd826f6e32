"""A passage: one retrieved chunk, where it comes from, and how well it matched the question."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Passage:
    """A retrieved chunk: its text, where it comes from, and how well it matched."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float
    fused: float = 0.0
    vector: Any = field(default=None, repr=False)
    # From a document the question points at ("the article", a title it names): the question is
    # about this document, so a low cosine alone does not make it off-topic.
    named: bool = False

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.source))

    @property
    def section(self) -> str:
        return str(self.metadata.get("section", ""))

    @property
    def author(self) -> str:
        """Who wrote the document (its front matter's ``author``), or ""."""
        return str(self.metadata.get("author") or "")

    @property
    def publication(self) -> str:
        """Where it was published (its front matter's ``publication``), or ""."""
        return str(self.metadata.get("publication") or "")

    @property
    def url(self) -> str | None:
        url = self.metadata.get("source_url")
        return str(url) if url and str(url).startswith(("http://", "https://")) else None
