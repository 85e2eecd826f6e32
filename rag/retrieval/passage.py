"""A passage: one retrieved chunk, where it comes from, and how well it matched the question.

The retriever hands passages out as LangChain ``Document``s (``to_document``); the answering
layer reads them back (``from_document``), so a ``Document`` carries everything a ``Passage`` does
but its vector (a LangChain user has no use for 384 floats in every document's metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document

from rag.index.documents import ABOUT_KEYS

# The metadata keys a Document carries besides the chunk's own metadata (source, title, section,
# source_url, ...): ``url`` is ``Passage.url`` (only http(s) links), ``fused`` the fusion score.
# ``chunk_id`` is there too (ingest stores it in every chunk's metadata already).
DOCUMENT_KEYS = ("similarity", "fused", "named", "url")


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
    def about(self) -> str:
        """What its document's front matter says of it: ``published``, ``date``, ``description``
        and ``note`` (e.g. "Codifies the ... Act of 2016 (enacted Feb. 18, 2016)"), or ""."""
        return " ".join(str(self.metadata[k]) for k in ABOUT_KEYS if self.metadata.get(k))

    @property
    def url(self) -> str | None:
        url = self.metadata.get("source_url")
        return str(url) if url and str(url).startswith(("http://", "https://")) else None

    def to_document(self) -> Document:
        """This passage as a LangChain ``Document`` (``id`` and ``metadata["chunk_id"]`` its chunk id)."""
        extra = {
            "chunk_id": self.chunk_id,
            "similarity": self.similarity,
            "fused": self.fused,
            "named": self.named,
            "url": self.url,
        }
        return Document(id=self.chunk_id, page_content=self.text, metadata={**self.metadata, **extra})

    @classmethod
    def from_document(cls, doc: Document) -> Passage:
        """The passage ``to_document`` made ``doc`` from (without its vector)."""
        meta = dict(doc.metadata)
        extra = {key: meta.pop(key, None) for key in DOCUMENT_KEYS}
        return cls(
            chunk_id=str(meta.get("chunk_id") or doc.id or ""),
            text=doc.page_content,
            metadata=meta,
            similarity=float(extra["similarity"] or 0.0),
            fused=float(extra["fused"] or 0.0),
            named=bool(extra["named"]),
        )
