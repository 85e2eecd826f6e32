"""Splitting documents into passages: by Markdown structure first, then by size.

Every chunk knows its section path (``"Economy > GDP (purchasing power parity)"``); the text we
embed is prefixed with the document title and that path, so a passage like "- total: 1,607 km"
is still found by a question about North Korea's land boundaries. The passage shown to users
(``page_content``) stays the document's own words.
"""

from __future__ import annotations

import hashlib
from difflib import SequenceMatcher

from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from rag.text import CARD_SECTION

HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
# Words of the title kept in the "title" context: enough to name the document ("22 U.S.C.
# Chapter 92 (Comprehensive Iran Sanctions, ..."), not the long statutory names that follow.
TITLE_WORDS = 8


def split_document(
    doc: Document, chunk_size: int, chunk_overlap: int, embed_context: str = "full"
) -> list[Document]:
    """Split one loaded document into chunks with ``section``, ``chunk_id`` and ``embed_text``.

    >>> text = "# T\\n\\n## Economy\\n\\nGDP grew."
    >>> d = Document(page_content=text, metadata={"source": "t.md", "title": "T"})
    >>> [(c.metadata["section"], c.page_content) for c in split_document(d, 200, 20)]
    [('Economy', 'GDP grew.')]
    """
    title = str(doc.metadata.get("title", ""))
    by_heading = MarkdownHeaderTextSplitter(headers_to_split_on=HEADERS, strip_headers=True)
    by_size = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
    )
    chunks: list[Document] = []
    card = _document_card(doc)
    if card is not None:
        chunks.append(card)
    for section_doc in by_heading.split_text(doc.page_content):
        headings = [section_doc.metadata[k] for _, k in HEADERS if k in section_doc.metadata]
        # The top heading usually restates the title; it adds nothing to the path.
        if "h1" in section_doc.metadata and _same_title(section_doc.metadata["h1"], title):
            headings = headings[1:]
        section = " > ".join(headings)
        for piece in by_size.split_text(section_doc.page_content):
            text = piece.strip()
            if not text:
                continue
            meta = dict(doc.metadata)
            meta["section"] = section
            chunks.append(Document(page_content=text, metadata=meta))
    _assign_ids(chunks, embed_context)
    return chunks


def document_label(meta: dict[str, object]) -> str:
    """What names a document as a whole (title, byline, file name), for matching questions that
    name their source ("according to the 2012 Factbook", "the Diplomat piece", "DePetris")."""
    parts = [str(meta.get("title") or "")]
    for key in ("author", "publication", "published"):
        if meta.get(key):
            parts.append(f"{key} {meta[key]}")
    stem = str(meta.get("source") or "").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    parts.append(stem.replace("-", " ").replace("_", " "))
    return "\n".join(p for p in parts if p)


def _same_title(heading: str, title: str) -> bool:
    a, b = heading.strip().lower(), title.strip().lower()
    return bool(a) and (a in b or b in a or SequenceMatcher(None, a, b).ratio() > 0.6)


def embed_text(chunk: Document, context: str = "full") -> str:
    """The text embedded and searched for a chunk: title (and byline), section path, passage.

    ``context`` picks the prefix: "title" (the title's first ``TITLE_WORDS`` words and the section
    path), "full" (whole title, byline, section path), "section" (section path only) or "none"
    (the passage alone); the retrieval eval compares them. Every token of the prefix is paid for
    once per chunk at ingest; BM25, where a long prefix is nearly free, always indexes "full".

    In the "full" form the author and publication let "what does DePetris say..." find an opinion
    piece whose passages never name it.
    """
    meta = chunk.metadata
    if context == "none":
        return chunk.page_content
    if meta.get("section") == CARD_SECTION and meta.get("author"):
        # Measured: a title prefix drowns "who wrote it?" (cosine 0.09); this form scores 0.35+.
        return f"Author of \u201c{meta.get('title', '')}\u201d: {meta['author']}. {chunk.page_content}"
    title = str(meta.get("title") or "") if context in ("full", "title") else ""
    if context == "title":
        title = " ".join(title.split()[:TITLE_WORDS])
    byline = ", ".join(str(meta[k]) for k in ("author", "publication") if meta.get(k))
    if byline and context == "full":
        title = f"{title} ({byline})" if title else byline
    head = " > ".join(p for p in (title, meta.get("section")) if p)
    return f"{head}\n{chunk.page_content}" if head else chunk.page_content


def _document_card(doc: Document) -> Document | None:
    """A short passage built from front matter, so "who wrote it?" has something to cite."""
    meta = doc.metadata
    if not meta.get("author"):
        return None
    # Phrased the way people ask ("who wrote it?"): the title would only dilute the embedding.
    text = f"Written by {meta['author']} (author)"
    where = ", ".join(str(meta[k]) for k in ("publication", "published") if meta.get(k))
    text += f", published in {where}." if where else "."
    card_meta = dict(meta)
    card_meta["section"] = CARD_SECTION
    return Document(page_content=text, metadata=card_meta)


def _assign_ids(chunks: list[Document], embed_context: str) -> None:
    # Ids come from content, so re-ingesting an unchanged file yields the same ids and an edit
    # changes only the ids of the chunks it touched. Identical passages in one file get a suffix.
    seen: dict[str, int] = {}
    for index, chunk in enumerate(chunks):
        # Everything that is embedded is in the key, so equal ids always mean equal vectors.
        key = "\x00".join((str(chunk.metadata.get("source")), embed_text(chunk, embed_context)))
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        chunk.metadata["chunk_id"] = digest if count == 0 else f"{digest}-{count}"
        chunk.metadata["chunk_index"] = index
